"""``imagefolder:DIR``: torchvision's ``ImageFolder`` layout, ``DIR/train/<class>/*`` and
``DIR/test/<class>/*`` (the layout torchvision, timm and solo-learn read).

Classes are the sorted folder names under ``DIR/train`` (torchvision's rule); a test folder is
mapped by its name onto the training classes, so a test split that lacks a class keeps the same
indices. Files with an image extension (torchvision's ``IMG_EXTENSIONS``) are read anywhere below a
class folder, in sorted order, decoded to RGB, and resized (bilinear, antialiased; non-square images
are squashed, as ``Resize((s, s))`` does) to the input size of the encoder that will read them. Then
they pass the checks and labelling of every data source (:func:`repeval.data.core.assemble`): the
label is ``<DIR's name>-<8 hex digits of the content sha256>`` (plus ``-<size>px`` off 32 px).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .core import DataError, Dataset, Source, assemble, resize_uint8

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
PLAIN_SIZE = 32     # the size the plain label stands for (the shared encoder's input)


def list_images(split_dir: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, class index)]) of one split folder; ``classes`` (the training split's)
    maps the test split's folders by name. One-line DataError for a missing folder, no class
    folder, a training class without images or a test class unknown to training."""
    if not split_dir.is_dir():
        raise DataError(f"imagefolder dataset: missing folder {split_dir} (expected DIR/train/<class>/* and "
                        f"DIR/test/<class>/*)")
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataError(f"imagefolder dataset: {split_dir} has no class folders (expected {split_dir}/<class>/*)")
    index = {n: i for i, n in enumerate(classes if classes is not None else names)}
    files = []
    for n in names:
        if n not in index:
            raise DataError(f"imagefolder dataset: test class folder {split_dir / n} has no counterpart under "
                            f"{split_dir.parent / 'train'}")
        found = sorted(Path(root) / f for root, _, fs in os.walk(split_dir / n) for f in fs
                       if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith("."))
        if not found and classes is None:
            raise DataError(f"imagefolder dataset: class folder {split_dir / n} has no images "
                            f"({', '.join(IMG_EXTENSIONS)})")
        files += [(f, index[n]) for f in found]
    return names, files


def read_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One file -> (uint8 (size, size, 3) RGB, its original (height, width)); one-line DataError."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises many types for a bad file: one line naming it
        raise DataError(f"imagefolder dataset: cannot read image {path}: {type(e).__name__}: {e}") from None
    hw = rgb.shape[:2]
    return (rgb if hw == (size, size) else resize_uint8(rgb[None], size)[0]), hw


def read_split(files: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray, set]:
    """Images (N, size, size, 3) uint8, labels (N,) int64 and the set of original sizes."""
    x = np.empty((len(files), size, size, 3), np.uint8)
    sizes = set()
    for i, (f, _) in enumerate(files):
        x[i], hw = read_image(f, size)
        sizes.add(hw)
    return x, np.array([c for _, c in files], np.int64), sizes


def load_imagefolder(directory: str | Path, image_size: int | None = None) -> Dataset:
    """``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` at ``image_size`` px square (default 32)."""
    d = Path(directory)
    size = PLAIN_SIZE if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"imagefolder dataset {d}: image size must be a positive integer, got {size!r}")
    classes, train_files = list_images(d / "train")
    _, test_files = list_images(d / "test", classes)
    (xtr, ytr, s_tr), (xte, yte, s_te) = read_split(train_files, size), read_split(test_files, size)
    sizes = sorted(s_tr | s_te)
    shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
    resized = (f"images at {size}x{size} px" if sizes == [(size, size)] else
               f"images resized from {shown} to {size}x{size} px (bilinear, antialiased)")
    names = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    note = (f"ImageFolder {d}: {len(classes)} classes ({names}), {len(train_files)} train / {len(test_files)} "
            f"test files; {resized}, the encoder's input size")
    src = Source(d.resolve().name, False, note, default_size=PLAIN_SIZE)
    return assemble(src, (xtr, ytr), (xte, yte), where=(str(d / "train"), str(d / "test")), image_size=size)
