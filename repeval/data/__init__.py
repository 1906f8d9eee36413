"""Datasets as whole tensors: float in [-1, 1], NCHW, integer labels, a fixed train/test split.

Batches are drawn by index from these tensors once they are on the target device; there are no
per-image PIL transforms anywhere in training or extraction (Hjelm et al. 2019's released code: Normalize(0.5, 0.5),
no augmentation). Sources: the embedded ``digits``, torchvision's formats
(:mod:`repeval.data.torchvision_sets`: ``cifar10``, ``cifar100``, ``stl10``, ``svhn``), ``npz:DIR`` and
``imagefolder:DIR`` (:mod:`repeval.data.imagefolder`);
checks, labels and the content hash: :mod:`repeval.data.core`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from .core import (DEFAULT_DATA_ROOT, DataError, Dataset, Source, assemble,  # noqa: F401
                        check_input_size, check_npz_sizes, content_hash, from_uint8_nhwc)
from ..registry import DATASETS, discover

# npz contents recognised by their content hash (data_core.content_hash of the checked arrays: train
# images, train labels, test images, test labels), wherever the folder is and whatever it is called.
KNOWN_NPZ = {
    "8bc7ce2841e703785a7a15118c38bf3c6fbf0c2a848697a98f7077195a21f41b": Source(
        "cifar10-jpeg", True, "cifar10-jpeg: a JPEG-derived copy of CIFAR-10 (quality 75), not the original pixels",
        paper_comparable=True, max_classes=10),
}


# scikit-learn's digits as shipped (sha256 of images and labels, :func:`content_hash`) and the indices
# of its test split, ``train_test_split(arange(1797), test_size=0.2, random_state=0,
# stratify=target)`` sorted (tests/repeval/test_data.py checks both against scikit-learn).
# Read without importing scikit-learn: that import costs each process of a run ~0.8 s of its start.
DIGITS_HASH = "087279c981f2b35473a1f0f890b4d960017b2db2d0130529a0510ef34afb7f70"
DIGITS_TEST = Path(__file__).with_name("digits_test.txt")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images (1797, 8, 8) float64 in 0..16 and int64 labels, read from the
    file scikit-learn ships (what ``sklearn.datasets.load_digits`` reads) without importing it."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():       # another layout: scikit-learn's own reader
        from sklearn.datasets import load_digits as sk_digits
        d = sk_digits()
        return d.images, d.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def digits_split(target: np.ndarray, digest: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices: scikit-learn's stratified 80/20 split (seed 0), the stored
    copy when the digits' content hash ``digest`` is that of the ones it was computed on."""
    if digest == DIGITS_HASH:
        test = np.loadtxt(DIGITS_TEST, dtype=np.int64).reshape(-1)
    else:
        from sklearn.model_selection import train_test_split
        test = np.sort(train_test_split(np.arange(len(target)), test_size=0.2, random_state=0, stratify=target)[1])
    return np.setdiff1d(np.arange(len(target)), test), test


@DATASETS.register("digits")
def load_digits(image_size: int | None = None, **_) -> Dataset:
    """The embedded default: scikit-learn's 8x8 digits, 32x32 RGB, stratified 80/20 split (seed 0)."""
    size = 32 if image_size is None else image_size
    if not isinstance(size, int) or size < 1:
        raise DataError(f"digits: image size must be a positive integer, got {size!r}")
    images, target = digits_arrays()
    img = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]             # (N,1,8,8) in [0,1]
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    img = (img.clamp(0, 1) * 2 - 1).repeat(1, 3, 1, 1).contiguous()
    labels = torch.from_numpy(target.astype(np.int64))
    digest = content_hash(images, target)
    tr, te = (torch.from_numpy(i) for i in digits_split(target, digest))
    return Dataset("digits" if size == 32 else f"digits-{size}px", img[tr], labels[tr], img[te], labels[te], 10,
                   f"scikit-learn 8x8 digits upsampled to {size}x{size} (bilinear), 3 channels, 80/20 stratified "
                   "split", False, digest)


def load_npz(directory: str | Path, image_size: int | None = None) -> Dataset:
    """``DIR/train.npz`` and ``DIR/test.npz`` with ``x`` uint8 (N, H, W, 3) and integer ``y``.

    Labelled by content: a pinned genuine content (:data:`KNOWN_NPZ`) gets its own label, anything
    else ``<DIR's name>-<8 hex digits of its content hash>``."""
    d = Path(directory)
    raw = []
    for split in ("train", "test"):
        p = d / f"{split}.npz"
        if not p.is_file():
            raise DataError(f"npz dataset: missing {p} (expected {d}/train.npz and {d}/test.npz)")
        check_npz_sizes(p)
        try:
            with np.load(p) as z:
                raw.append((z["x"], z["y"]))
        except Exception as e:  # zip, pickle-refusal and key errors alike: one line naming the file
            raise DataError(f"npz dataset: cannot read {p}: {type(e).__name__}: {e}") from None

    def source(digest: str) -> Source:
        return KNOWN_NPZ.get(digest) or Source(d.resolve().name, False, f"images from {d}")
    return assemble(source, *raw, where=(str(d / "train.npz"), str(d / "test.npz")), image_size=image_size)


def load_readers() -> None:
    """Register every reader: the modules of this package (``torchvision_sets``: cifar10, cifar100, stl10,
    svhn) and entry points of group ``repeval.datasets`` (:func:`repeval.registry.discover`)."""
    discover(__name__, "repeval.datasets")


def dataset_names() -> list[str]:
    load_readers()
    return DATASETS.names() + ["npz:DIR", "imagefolder:DIR"]


def load_dataset(spec: str, data_root: str | Path | None = None, download: bool = False,
                 image_size: int | None = None) -> Dataset:
    """``digits``, ``cifar10``, ``cifar100``, ``stl10``, ``svhn``, ``npz:DIR`` or ``imagefolder:DIR``.

    ``image_size`` resizes to that square size (the label then says so, e.g. ``cifar10-64px``);
    None keeps each source's default (STL-10 and imagefolder: 32, the shared encoder's input;
    others: native)."""
    if spec.startswith("npz:"):
        return load_npz(spec[4:], image_size)
    if spec.startswith("imagefolder:"):
        from .imagefolder import load_imagefolder
        return load_imagefolder(spec[len("imagefolder:"):], image_size)
    load_readers()
    kwargs = {"download": download, "image_size": image_size}
    if data_root is not None:
        kwargs["data_root"] = data_root
    return DATASETS.get(spec)(**kwargs)
