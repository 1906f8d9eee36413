"""The dataset container and the checks every data source passes through before a run uses it.

Every loader hands raw uint8 images (N, H, W, 3) and labels per split to :func:`assemble`, which
validates them (one-line :class:`DataError` naming the file or dataset), hashes their content,
chooses the dataset's *label* (its name in ``results/`` and the tables) and converts to float
tensors in [-1, 1] (Hjelm et al. 2019's released code: Normalize(0.5, 0.5), no augmentation).

Labels are unique per content: a dataset whose content is verified as a published one (the
archive's published checksums, or a content hash pinned in code) keeps its plain name
(``cifar10``, ``cifar10-jpeg``); any other gets its source's name plus the first 8 hex digits of
the sha256 of its arrays (``mydata-1a2b3c4d``), so a folder named ``cifar10`` or ``digits`` can
neither overwrite those records nor be compared with the paper.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

DEFAULT_DATA_ROOT = Path("~/.cache/repeval/data").expanduser()


class DataError(RuntimeError):
    """Missing or malformed dataset files, or data that cannot be evaluated."""


@dataclass(frozen=True)
class Dataset:
    name: str                 # label used in results paths and tables ("digits", "cifar10-jpeg")
    x_train: torch.Tensor     # (N, 3, H, W) float32 in [-1, 1]
    y_train: torch.Tensor     # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    note: str = ""            # provenance shown in table footnotes
    paper_comparable: bool = False   # genuine content of one of the paper's datasets, at its size
    content_hash: str = ""    # sha256 of the source arrays (images and labels of both splits)

    @cached_property
    def fingerprint(self) -> str:
        """Cheap content hash, part of every feature-cache key and record identity (computed once)."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(tuple(t.shape)).encode())
            flat = t.reshape(-1)
            h.update(flat[:: max(1, flat.numel() // 65536)].numpy().tobytes())
        return h.hexdigest()[:12]

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[2:])


@dataclass(frozen=True)
class Source:
    """What a loader knows about its data before the content is checked."""
    name: str                       # the label if genuine, else the stem of the label
    genuine: bool                   # content verified as the published dataset (or built in)
    note: str                       # provenance for the table footnotes
    paper_comparable: bool = False  # one of the paper's datasets (only counts when genuine)
    max_classes: int | None = None  # the published class count, an upper bound on the labels
    default_size: int | None = None  # image side the label stands for (None: the native size)


def from_uint8_nhwc(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    return (t / 127.5 - 1.0).contiguous()


def content_hash(*arrays: np.ndarray) -> str:
    """sha256 over each array's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def safe_label(text: str) -> str:
    """One safe path segment: letters, digits, '.', '_', '-' (others become '_'), no leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-") or "data"


MAX_CLASSES = 100_000   # labels 0 .. MAX_CLASSES - 1 (ImageNet-21k has 21,841 classes)


def int_labels(y, where: str) -> np.ndarray:
    """Labels as int64 (N,); integral floats are accepted, fractions, NaN and strings are not, nor
    labels outside [0, MAX_CLASSES) (checked before the cast, so a uint64 is never read as negative)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {y.shape}")
    if y.dtype.kind == "f" and y.size:
        ok = np.isfinite(y) & (y == np.round(y))
        if not ok.all():
            raise DataError(f"{where}: labels must be integers, found {y[~ok][0].item()!r}")
    elif y.dtype.kind not in "iubf":
        raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}"
                        + (f" (e.g. {y[0].item()!r})" if y.size else ""))
    if y.size and y.dtype.kind != "b":
        lo, hi = y.min().item(), y.max().item()
        if lo < 0:
            raise DataError(f"{where}: negative label {int(lo)}")
        if hi >= MAX_CLASSES:
            raise DataError(f"{where}: label {int(hi)} is implausible (at most {MAX_CLASSES} classes, "
                            f"labels 0..{MAX_CLASSES - 1})")
    return y.astype(np.int64)


def memory_bytes() -> int:
    """Physical memory of this machine (bytes); 16 GiB where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def check_npz_sizes(path: Path, keys: tuple[str, ...] = ("x", "y")) -> None:
    """Before any array of the npz file ``path`` is decompressed: each ``keys`` entry's declared size
    (shape x item size, from its .npy header) must match the bytes the archive says it holds and fit
    in half this machine's memory, so a decompression bomb is a one-line DataError, not an OOM kill."""
    limit = memory_bytes() // 2
    try:
        with zipfile.ZipFile(path) as zf:
            for key in keys:
                try:
                    info = zf.getinfo(f"{key}.npy")
                except KeyError:
                    continue   # np.load names the missing array
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(f))
                    header = f.tell()
                if dtype.hasobject:
                    continue   # np.load refuses pickled arrays itself
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > limit:
                    raise DataError(f"{path}: array '{key}' {tuple(shape)} {dtype} would take {declared / 2**30:.1f} "
                                    f"GiB, more than half this machine's memory ({limit / 2**30:.1f} GiB)")
                if declared != info.file_size - header:
                    raise DataError(f"{path}: array '{key}' declares {declared} bytes but the archive holds "
                                    f"{info.file_size - header} (corrupt or crafted file)")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable npz archive ({type(e).__name__}: {e})") from None


def check_split(x, y, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W, 3) with N >= 2 and N integer labels >= 0."""
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3], default=0) < 1:
        raise DataError(f"{where}: images must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    y = int_labels(y, where)
    if len(y) != len(x):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(x) < 2:
        raise DataError(f"{where}: {len(x)} image(s); need at least 2 per split")
    if y.min() < 0:
        raise DataError(f"{where}: negative label {int(y.min())}")
    return x, y


def check_classes(y_train: np.ndarray, y_test: np.ndarray, name: str, max_classes: int | None) -> int:
    """n_classes = largest training label + 1; >= 2 classes, every test class seen in training."""
    for split, y in (("train", y_train), ("test", y_test)):
        if max_classes is not None and y.max() >= max_classes:
            raise DataError(f"{name}: {split} label {int(y.max())} outside [0, {max_classes})")
    seen = np.unique(y_train)
    if len(seen) < 2:
        raise DataError(f"{name}: the training split has {len(seen)} class; need at least 2")
    unseen = np.setdiff1d(np.unique(y_test), seen)
    if len(unseen):
        raise DataError(f"{name}: test class(es) {unseen[:5].tolist()} never occur in the training split")
    return int(seen.max()) + 1


def resize_uint8(x: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3): bilinear with antialiasing (torchvision's Resize on
    tensors), rounded back to uint8; computed in chunks so large sets fit in memory."""
    out = np.empty((x.shape[0], size, size, 3), np.uint8)
    for i in range(0, x.shape[0], chunk):
        t = torch.from_numpy(np.ascontiguousarray(x[i:i + chunk])).permute(0, 3, 1, 2).float()
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
        out[i:i + chunk] = t.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def assemble(source: Source | Callable[[str], Source], train: tuple, test: tuple, *, where: tuple[str, str],
             image_size: int | None = None) -> Dataset:
    """Check, label and convert one dataset. ``source`` may be a function of the content hash (how
    ``npz:`` folders are recognised); ``where`` names the train and test files for error messages;
    ``image_size`` resizes the images to that square size (declared in the label and the note)."""
    (xtr, ytr), (xte, yte) = check_split(*train, where[0]), check_split(*test, where[1])
    digest = content_hash(xtr, ytr, xte, yte)
    src = source(digest) if callable(source) else source
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"{src.name}: train images are {xtr.shape[1]}x{xtr.shape[2]} px but test images "
                        f"{xte.shape[1]}x{xte.shape[2]} px")
    n_classes = check_classes(ytr, yte, src.name, src.max_classes)
    name, note = src.name, src.note
    if not src.genuine:
        name = f"{safe_label(src.name)}-{digest[:8]}"
        note += f" (content sha256 {digest[:8]}: not a verified published dataset, not compared with the paper)"
    native = xtr.shape[1:3]
    size = image_size if image_size is not None else src.default_size
    if size is not None and (not isinstance(size, int) or size < 1):
        raise DataError(f"{src.name}: image size must be a positive integer, got {size!r}")
    if size is not None and native != (size, size):
        xtr, xte = resize_uint8(xtr, size), resize_uint8(xte, size)
        note += f"; resized from {native[0]}x{native[1]} to {size}x{size} px (bilinear, antialiased)"
    plain = src.default_size or (native[0] if native[0] == native[1] else None)
    off_size = size is not None and size != plain   # not the size the plain label stands for
    if off_size:
        name += f"-{size}px"
    comparable = src.genuine and src.paper_comparable and not off_size
    return Dataset(name, from_uint8_nhwc(xtr), torch.from_numpy(ytr), from_uint8_nhwc(xte),
                   torch.from_numpy(yte), n_classes, note, comparable, digest)


def check_input_size(ds: Dataset, expected_hw: tuple[int, int], model: str) -> None:
    """One-line DataError when ``ds``'s images are not the ``expected_hw`` an encoder takes."""
    hw = ds.image_hw
    if tuple(hw) != tuple(expected_hw):
        raise DataError(f"dataset '{ds.name}' has {hw[0]}x{hw[1]} px images but model '{model}' takes "
                        f"{expected_hw[0]}x{expected_hw[1]} px; resize the data (e.g. image_size) or use "
                        f"an encoder for {hw[0]}x{hw[1]} px")
