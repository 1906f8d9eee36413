"""Datasets as whole tensors: float in [-1, 1], NCHW, integer labels, a fixed train/test split.

Batches are drawn by index from these tensors once they are on the target device; there are no
per-image PIL transforms anywhere in training or extraction (DIM_SPEC.md "Data": Normalize(0.5, 0.5),
no augmentation).
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .registry import DATASETS

DEFAULT_DATA_ROOT = Path("~/.cache/repeval/data").expanduser()


class DataError(RuntimeError):
    """Missing or malformed dataset files."""


@dataclass(frozen=True)
class Dataset:
    name: str                 # label used in results paths and tables ("digits", "cifar10-jpeg")
    x_train: torch.Tensor     # (N, 3, H, W) float32 in [-1, 1]
    y_train: torch.Tensor     # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    note: str = ""            # provenance shown in table footnotes

    @property
    def fingerprint(self) -> str:
        """Cheap content hash, part of every feature-cache key."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(tuple(t.shape)).encode())
            flat = t.reshape(-1)
            h.update(flat[:: max(1, flat.numel() // 65536)].numpy().tobytes())
        return h.hexdigest()[:12]


def from_uint8_nhwc(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    return (t / 127.5 - 1.0).contiguous()


@DATASETS.register("digits")
def load_digits(**_) -> Dataset:
    """The embedded default: scikit-learn's 8x8 digits, 32x32 RGB, stratified 80/20 split (seed 0)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    img = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]             # (N,1,8,8) in [0,1]
    img = torch.nn.functional.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)
    img = (img.clamp(0, 1) * 2 - 1).repeat(1, 3, 1, 1).contiguous()
    labels = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=d.target)
    tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    return Dataset("digits", img[tr], labels[tr], img[te], labels[te], 10,
                   "scikit-learn 8x8 digits upsampled to 32x32 (bilinear), 3 channels, 80/20 stratified split")


def _torchvision_cifar(root: Path, base: str, files: tuple[list[str], list[str]], label_key: str,
                       n_classes: int, name: str, download: bool, cls_name: str) -> Dataset:
    folder = root / base
    if not folder.is_dir() and download:
        import torchvision
        getattr(torchvision.datasets, cls_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, cls_name)(str(root), train=False, download=True)
    if not folder.is_dir():
        raise DataError(f"{name}: no data at {folder} (set --data-root, or pass --download to fetch it)")

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fn in names:
            p = folder / fn
            try:
                with open(p, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.extend(entry[label_key])
            except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
                raise DataError(f"{name}: cannot read {p}: {type(e).__name__}: {e}") from None
        return np.concatenate(xs).transpose(0, 2, 3, 1), np.asarray(ys, dtype=np.int64)

    xtr, ytr = read(files[0])
    xte, yte = read(files[1])
    return Dataset(name, from_uint8_nhwc(xtr), torch.from_numpy(ytr), from_uint8_nhwc(xte),
                   torch.from_numpy(yte), n_classes, f"torchvision {cls_name} files under {root}")


@DATASETS.register("cifar10")
def load_cifar10(data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = False, **_) -> Dataset:
    files = ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])
    return _torchvision_cifar(Path(data_root), "cifar-10-batches-py", files, "labels", 10, "cifar10",
                              download, "CIFAR10")


@DATASETS.register("cifar100")
def load_cifar100(data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = False, **_) -> Dataset:
    return _torchvision_cifar(Path(data_root), "cifar-100-python", (["train"], ["test"]), "fine_labels",
                              100, "cifar100", download, "CIFAR100")


def load_npz(directory: str | Path) -> Dataset:
    """``DIR/train.npz`` and ``DIR/test.npz`` with ``x`` uint8 (N, H, W, 3) and ``y`` int; named after DIR."""
    d = Path(directory)
    arrays = {}
    for split in ("train", "test"):
        p = d / f"{split}.npz"
        if not p.is_file():
            raise DataError(f"npz dataset: missing {p} (expected {d}/train.npz and {d}/test.npz)")
        try:
            with np.load(p) as z:
                x, y = z["x"], z["y"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"npz dataset: cannot read {p}: {type(e).__name__}: {e}") from None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(y) != len(x):
            raise DataError(f"npz dataset: {p} needs x uint8 (N, H, W, 3) and y (N,), got x {x.dtype} "
                            f"{x.shape}, y {np.shape(y)}")
        arrays[split] = (from_uint8_nhwc(x), torch.from_numpy(np.asarray(y, dtype=np.int64)))
    n_classes = int(max(arrays["train"][1].max(), arrays["test"][1].max())) + 1
    name = d.resolve().name
    note = f"images from {d}"
    if name == "cifar10-jpeg":
        note = "cifar10-jpeg: a JPEG-derived copy of CIFAR-10 (quality 75), not the original pixels"
    return Dataset(name, *arrays["train"], *arrays["test"], n_classes, note)


def dataset_names() -> list[str]:
    return DATASETS.names() + ["npz:DIR"]


def load_dataset(spec: str, data_root: str | Path | None = None, download: bool = False) -> Dataset:
    """``digits``, ``cifar10``, ``cifar100`` or ``npz:DIR``."""
    if spec.startswith("npz:"):
        return load_npz(spec[4:])
    kwargs = {"download": download}
    if data_root is not None:
        kwargs["data_root"] = data_root
    return DATASETS.get(spec)(**kwargs)
