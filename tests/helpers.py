"""Plain helpers shared by several test files (pytest fixtures are in tests/conftest.py).

Import them as ``from tests.helpers import ...`` (tests/ is a package).
"""
from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from repeval.config import TrainConfig
from repeval.plugin.protocol import ProtocolInput, Split
from repeval.registry import MODELS
from repeval.seeding import generator


# -------------------------------------------------------------------------------------- result records

def read_records(results: Path) -> dict[str, dict]:
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}


# -------------------------------------------------------------- datasets (tests/repeval/test_data*.py)

def check_dataset(ds, n_classes, hw=(32, 32)):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1:] == (3, *hw)
        assert x.min() >= -1 and x.max() <= 1
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    assert ds.n_classes == n_classes


def one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def cifar_entry(rng, n, label_key="labels", n_classes=10):
    return {"batch_label": "training batch", "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            label_key: [int(i % n_classes) for i in range(n)], "filenames": [b"img_%d.png" % i for i in range(n)]}


def write_fake_cifar(root, n=20, seed=0):
    """The layout and pickling of the published archive: protocol 2, a dict per batch file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(cifar_entry(rng, n), protocol=2))
    return folder


def npz_folder(d, n_train=30, n_test=10, hw=32, classes=4, seed=1, **override):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        arrays = {"x": rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8), "y": np.arange(n) % classes}
        arrays.update(override.get(split, {}))
        np.savez(d / f"{split}.npz", **arrays)
    return d


# ------------------------------------- encoder families (tests/models/, tests/repeval/test_critics.py)

def make_cfg(**kw) -> TrainConfig:
    base = dict(epochs=1, batch_size=32)
    base.update(kw)
    return TrainConfig(**base)


def build(name: str, seed: int = 0, critic_units: int = 32, **kw):
    torch.manual_seed(seed)
    spec = MODELS.get(name)
    return spec.build(make_cfg(**kw), 10, 3, spec.family_config({"dim": {"critic_units": critic_units}}))


def run_steps(fam, x, labels, steps: int, n_train: int = 128):
    fam.prepare(n_train)
    opts = fam.optimizers()
    fam.train()
    idx = torch.arange(x.shape[0])
    out = []
    for s in range(steps):
        torch.manual_seed(1234)            # the same noise every step: a truly repeated batch
        out.append({k: float(v) for k, v in fam.train_step(x, labels, idx, opts).items()})
    return out


# ----------------- synthetic features for the protocols (tests/protocols/, tests/repeval/test_ssim.py)

# Table 1's probe and Table 4's SVM: k Gaussian classes (+ pure-noise dims)

def blobs(n, d, k, scale, seed, noise_dims=0):
    """k Gaussian classes with centres scale * N(0, I) in d dims (+ pure-noise dims)."""
    g = generator(seed)
    centres = torch.randn(k, d, generator=g) * scale
    y = torch.randint(k, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    if noise_dims:
        x = torch.cat([x, torch.randn(n, noise_dims, generator=g)], 1)
    return x, y


def as_input(x, y, n_tr, k=10) -> ProtocolInput:
    return ProtocolInput("conv", Split(x[:n_tr], y[:n_tr]), Split(x[n_tr:], y[n_tr:]), k)


def split_blobs(n_tr, n_te, d, k, scale, seed, noise_dims=0):
    return as_input(*blobs(n_tr + n_te, d, k, scale, seed, noise_dims), n_tr, k)


def random_label_input(n_tr, n_te, d, seed):
    g = generator(seed)
    return as_input(torch.randn(n_tr + n_te, d, generator=g), torch.randint(10, (n_tr + n_te,), generator=g), n_tr)


# Table X's kNN and linear probe (and the separable / random_labels fixtures of tests/conftest.py)

BLOB_CLASSES = 10


def class_blobs(n: int, d: int, sep: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of BLOB_CLASSES Gaussian classes, means ``sep`` x N(0, I) apart (sep 0: labels independent of x)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, BLOB_CLASSES, (n,), generator=g)
    means = sep * torch.randn(BLOB_CLASSES, d, generator=g)
    return means[y] + torch.randn(n, d, generator=g), y


def blob_task(sep: float, n_train: int = 1500, n_test: int = 2000, d: int = 24) -> ProtocolInput:
    x, y = class_blobs(n_train + n_test, d, sep, seed=1)
    return ProtocolInput("y", Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:]), BLOB_CLASSES)


# MINE and NDM: codes (and images) with dummy labels

def code_input(x_tr, x_te, img_tr=None, img_te=None) -> ProtocolInput:
    lab = lambda t: torch.zeros(t.shape[0], dtype=torch.long)   # noqa: E731
    return ProtocolInput("y", Split(x_tr, lab(x_tr), img_tr), Split(x_te, lab(x_te), img_te), 10)


# SSIM and reconstruction

def smooth_images(n, seed, size=32):
    g = generator(seed)
    x = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------ repeval validate

VALIDATION_CHECKS = ("gaussian", "invariance", "ndm", "ssim", "student_t")


def wait_for(cond, what: str, timeout: float = 240.0):
    """Poll ``cond()`` until it returns something true (returned), else fail naming ``what``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
