"""CIFAR-10, CIFAR-100, STL-10 and SVHN in torchvision's on-disk formats, read without running code.

The file lists, URLs and published md5 checksums are torchvision's own (the class attributes of
``torchvision.datasets.CIFAR10`` & co.); downloads go through ``torchvision.datasets.utils`` (which
checks the archive's md5). The readers are ours: torchvision's CIFAR classes unpickle without
restriction (see :mod:`repeval.data.safe_pickle`), and its STL10/SVHN classes refuse any folder whose
checksums differ, so a user's own files in the same format could not be read at all.

What is checked when: every load computes the md5 of each file it reads and compares it with the
published one. All match -> the genuine dataset, labelled ``cifar10`` / ``cifar100`` / ``stl10`` /
``svhn``. Any differs -> with ``--download`` a one-line error (downloaded data must be genuine;
existing files are never overwritten); without it, the files are read as a user's own data in that
format and labelled ``<name>-<content hash>`` (see :mod:`repeval.data.core`).

Formats (Krizhevsky 2009; Coates et al. 2011; Netzer et al. 2011, as torchvision reads them):
CIFAR: pickled dicts with ``data`` uint8 (N, 3072) in CHW order and a label list; STL-10: raw uint8
``{split}_X.bin`` of (N, 3, 96, 96) images stored column-major, ``{split}_y.bin`` labels 1..10;
SVHN: MATLAB ``{split}_32x32.mat`` with ``X`` (32, 32, 3, N) and ``y`` (N, 1), digit 0 stored as 10.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..registry import DATASETS
from .core import DEFAULT_DATA_ROOT, DataError, Dataset, Source, assemble
from .safe_pickle import restricted_loads

@dataclass(frozen=True)
class Format:
    name: str                 # our label for the genuine dataset
    tv_class: str             # torchvision.datasets class holding the file list and checksums
    folder: str               # sub-folder of the data root ("" = the root itself, as SVHN)
    files: tuple[tuple[str, ...], tuple[str, ...]]   # (train files, test files)
    read: Callable[["Format", Path, tuple[str, ...]], tuple[np.ndarray, np.ndarray]]
    n_classes: int
    paper: bool = False       # one of the paper's datasets (Hjelm et al. 2019, Table 1)
    label_key: str = "labels"
    default_size: int | None = None


def _published(fmt: Format) -> tuple[dict[str, str], Callable[[Path], None]]:
    """torchvision's md5 per file name, and a function downloading the archive into a root."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    cls = getattr(tvd, fmt.tv_class)
    if hasattr(cls, "split_list"):   # SVHN: one .mat file per split
        md5 = {fn: m for _, fn, m in cls.split_list.values()}

        def fetch(root: Path) -> None:
            for split in ("train", "test"):
                url, fn, m = cls.split_list[split]
                download_url(url, str(root), fn, m)
    else:
        md5 = dict(map(tuple, cls.train_list + cls.test_list))

        def fetch(root: Path) -> None:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    return md5, fetch


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_format(fmt: Format, data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = False,
                image_size: int | None = None) -> Dataset:
    root = Path(data_root).expanduser()
    folder = root / fmt.folder
    md5, fetch = _published(fmt)
    names = fmt.files[0] + fmt.files[1]
    if download and not all((folder / n).is_file() for n in names):
        try:
            fetch(root)
        except Exception as e:  # network, disk or archive checksum failure
            raise DataError(f"{fmt.name}: download into {root} failed: {type(e).__name__}: {e}") from None
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{fmt.name}: no data at {folder / missing[0]} (set --data-root, or pass --download "
                        f"to fetch it)")
    try:
        bad = [n for n in names if _md5(folder / n) != md5.get(n)]
    except OSError as e:
        raise DataError(f"{fmt.name}: cannot read {e.filename}: {e.strerror}") from None
    if bad and download:
        raise DataError(f"{fmt.name}: {folder / bad[0]} does not match torchvision's published md5; "
                        f"remove the folder and rerun with --download")
    note = f"torchvision {fmt.tv_class} files under {root}"
    src = Source(fmt.name, not bad, note if not bad else note + " that differ from the published files",
                 fmt.paper, fmt.n_classes, fmt.default_size)
    train, test = (fmt.read(fmt, folder, f) for f in fmt.files)
    return assemble(src, train, test, where=(str(folder / fmt.files[0][0]), str(folder / fmt.files[1][0])),
                    image_size=image_size)


def _read_cifar(fmt: Format, folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for fn in names:
        p = folder / fn
        try:
            entry = restricted_loads(p.read_bytes())
        except OSError as e:
            raise DataError(f"{fmt.name}: cannot read {p}: {e.strerror}") from None
        except Exception as e:  # a malformed or hostile pickle: never a traceback, never run
            raise DataError(f"{fmt.name}: {p} is not a CIFAR batch file: {type(e).__name__}: {e}") from None
        data = entry.get("data") if isinstance(entry, dict) else None
        labels = entry.get(fmt.label_key) if isinstance(entry, dict) else None
        if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
                or data.shape[1] != 3 * 32 * 32 or not isinstance(labels, (list, np.ndarray))):
            raise DataError(f"{fmt.name}: {p} is not a CIFAR batch file: expected a dict with 'data' uint8 "
                            f"(N, 3072) and a '{fmt.label_key}' list")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels))
    return np.concatenate(xs), np.concatenate(ys)


def _read_stl10(fmt: Format, folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    xfile, yfile = (folder / n for n in names)
    x, y = np.fromfile(xfile, dtype=np.uint8), np.fromfile(yfile, dtype=np.uint8)
    if x.size % (3 * 96 * 96):
        raise DataError(f"{fmt.name}: {xfile} holds {x.size} bytes, not a whole number of 3x96x96 images")
    # stored (N, C, W, H) (column-major images, as torchvision reads them) -> (N, H, W, C); labels 1..10
    return x.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1), y.astype(np.int64) - 1


def _read_svhn(fmt: Format, folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    p = folder / names[0]
    try:
        mat = loadmat(p, variable_names=["X", "y"])
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    except Exception as e:  # scipy raises many types on malformed files
        raise DataError(f"{fmt.name}: {p} is not an SVHN .mat file: {type(e).__name__}: {e}") from None
    if x.ndim != 4:
        raise DataError(f"{fmt.name}: {p}: X must be (32, 32, 3, N), got {x.shape}")
    if y.dtype.kind in "iuf":
        y = np.where(y == 10, 0, y)   # digit 0 is stored as 10
    return x.transpose(3, 0, 1, 2), y


FORMATS = {
    "cifar10": Format("cifar10", "CIFAR10", "cifar-10-batches-py",
                      (tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)), _read_cifar, 10,
                      paper=True),
    "cifar100": Format("cifar100", "CIFAR100", "cifar-100-python", (("train",), ("test",)), _read_cifar, 100,
                       paper=True, label_key="fine_labels"),
    "stl10": Format("stl10", "STL10", "stl10_binary", (("train_X.bin", "train_y.bin"), ("test_X.bin", "test_y.bin")),
                    _read_stl10, 10, default_size=32),
    "svhn": Format("svhn", "SVHN", "", (("train_32x32.mat",), ("test_32x32.mat",)), _read_svhn, 10),
}


def _register(fmt: Format) -> None:
    def load(data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = False, image_size: int | None = None,
             **_) -> Dataset:
        return load_format(fmt, data_root, download, image_size)
    load.__doc__ = f"torchvision's {fmt.tv_class} files under DATA_ROOT/{fmt.folder}"
    DATASETS.register(fmt.name, load)


for _fmt in FORMATS.values():
    _register(_fmt)
