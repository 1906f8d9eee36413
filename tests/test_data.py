import pickle

import numpy as np
import pytest
import torch

from repeval.cli import main
from repeval.data import DataError, load_dataset


def _check(ds, n_classes):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1:] == (3, 32, 32)
        assert x.min() >= -1 and x.max() <= 1
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    assert ds.n_classes == n_classes


def test_digits_shapes_ranges_and_fixed_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    _check(a, 10)
    assert a.x_train.shape[0] == 1437 and a.x_test.shape[0] == 360
    assert torch.equal(a.x_test, b.x_test) and a.fingerprint == b.fingerprint
    # stratified: every class in both splits in about the same proportion
    assert torch.bincount(a.y_test).min() >= 30


def _write_fake_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return folder


def test_fake_cifar10_in_torchvision_format(tmp_path):
    folder = _write_fake_cifar(tmp_path)
    ds = load_dataset("cifar10", data_root=tmp_path)
    _check(ds, 10)
    assert ds.x_train.shape[0] == 100 and ds.x_test.shape[0] == 20
    # pixel 0 of image 0: the raw uint8 value maps to [-1, 1] with Normalize(0.5, 0.5)
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)["data"][0, 0]
    assert abs(float(ds.x_test[0, 0, 0, 0]) - (raw / 127.5 - 1)) < 1e-6


def test_missing_cifar_names_path_and_flag(tmp_path, capsys):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(tmp_path) in str(e.value) and "--download" in str(e.value)
    assert main(["run", "--models", "ae", "--dataset", "cifar100", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cifar-100-python" in err


def test_npz_dataset(tmp_path):
    d = tmp_path / "mydata"
    d.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 30), ("test", 10)):
        np.savez(d / f"{split}.npz", x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 4, n))
    ds = load_dataset(f"npz:{d}")
    assert ds.name == "mydata"
    _check(ds, ds.n_classes)
    assert ds.x_train.shape[0] == 30


def test_npz_bad_shapes_and_missing(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_dataset(f"npz:{tmp_path}")
    np.savez(tmp_path / "train.npz", x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4))
    np.savez(tmp_path / "test.npz", x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4))
    with pytest.raises(DataError, match=r"x uint8 \(N, H, W, 3\)"):
        load_dataset(f"npz:{tmp_path}")
