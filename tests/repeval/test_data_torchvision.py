"""CIFAR-10/100, STL-10 and SVHN in torchvision's on-disk formats (repeval/data/torchvision_sets.py), as fakes
written here: layout, published checksums, downloads, malformed and missing files."""
import pickle

import numpy as np
import pytest
import torch

from repeval.data import torchvision_sets as data_torchvision
from repeval.cli import main
from repeval.data import DataError, load_dataset
from tests.helpers import check_dataset, cifar_entry, one_line, write_fake_cifar


# ----------------------------------------------------------------------------------------------- CIFAR

def test_fake_cifar10_in_torchvision_format(tmp_path):
    folder = write_fake_cifar(tmp_path)
    # the archives were written by numpy 1.x: the same stream under its module name loads too
    p = folder / "data_batch_5"
    p.write_bytes(p.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    ds = load_dataset("cifar10", data_root=tmp_path)
    check_dataset(ds, 10)
    assert ds.x_train.shape[0] == 100 and ds.x_test.shape[0] == 20
    # not the published files: a content-labelled dataset, never compared with the paper
    assert ds.name == f"cifar10-{ds.content_hash[:8]}" and not ds.paper_comparable
    assert "differ from the published files" in ds.note
    entry = pickle.loads((folder / "test_batch").read_bytes())
    raw = entry["data"][0].reshape(3, 32, 32)
    assert torch.allclose(ds.x_test[0], torch.from_numpy(raw).float() / 127.5 - 1, atol=1e-6)
    assert ds.y_test.tolist() == entry["labels"]


def _publish(monkeypatch, folder):
    """Pretend torchvision's md5 list is that of the files in ``folder``."""
    real = data_torchvision._published

    def fake(fmt):
        _, fetch = real(fmt)
        return {p.name: data_torchvision._md5(p) for p in folder.iterdir()}, fetch
    monkeypatch.setattr(data_torchvision, "_published", fake)


def test_cifar_with_published_checksums_is_genuine(tmp_path, monkeypatch):
    folder = write_fake_cifar(tmp_path)
    _publish(monkeypatch, folder)
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert ds.name == "cifar10" and ds.paper_comparable
    assert load_dataset("cifar10", data_root=tmp_path, image_size=64).name == "cifar10-64px"
    assert not load_dataset("cifar10", data_root=tmp_path, image_size=64).paper_comparable


def test_download_must_match_published_checksums(tmp_path, monkeypatch):
    calls = []

    def fake_published(fmt):   # a "download" that delivers files unlike the published ones
        return {}, lambda root: calls.append(write_fake_cifar(root))
    monkeypatch.setattr(data_torchvision, "_published", fake_published)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path, download=True)
    assert len(calls) == 1 and "published md5" in one_line(e)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, n in (("train", 300), ("test", 100)):
        (folder / name).write_bytes(pickle.dumps(cifar_entry(rng, n, "fine_labels", 100), protocol=2))
    ds = load_dataset("cifar100", data_root=tmp_path)
    check_dataset(ds, 100)
    assert ds.name.startswith("cifar100-") and ds.y_train.tolist()[:101] == list(range(100)) + [0]


@pytest.mark.parametrize("payload", [
    b"", b"garbage\x00\xff", pickle.dumps({"data": 1}, protocol=2)[:-5], pickle.dumps([1, 2], protocol=2),
    pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, protocol=2),
    pickle.dumps({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, protocol=2),
    pickle.dumps({"data": np.zeros((4, 3072), np.uint8)}, protocol=2)])
def test_malformed_cifar_file_is_one_line(tmp_path, payload):
    folder = write_fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "test_batch" in one_line(e)


def test_missing_cifar_names_path_and_flag(tmp_path, capsys):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(tmp_path) in one_line(e) and "--download" in str(e.value)
    assert main(["run", "--models", "ae", "--dataset", "cifar100", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cifar-100-python" in err


# ------------------------------------------------------------------------------------- STL-10 and SVHN

def _halves(n, hw):
    """Images whose left half is dark and right half bright (catches a transposed layout)."""
    x = np.zeros((n, hw, hw, 3), np.uint8)
    x[:, :, hw // 2:] = 200
    x[:, :, :, 1] += np.arange(n, dtype=np.uint8)[:, None, None]   # per-image tag in the green channel
    return x


def _write_fake_stl10(root, n_train=20, n_test=10):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = _halves(n, 96)
        # stl10_binary stores each image column-major: (N, C, W, H)
        (folder / f"{split}_X.bin").write_bytes(x.transpose(0, 3, 2, 1).tobytes())
        (folder / f"{split}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())
    return folder


def test_fake_stl10_round_trip_and_resize(tmp_path):
    _write_fake_stl10(tmp_path)
    full = load_dataset("stl10", data_root=tmp_path, image_size=96)
    check_dataset(full, 10, (96, 96))
    expect = torch.from_numpy(_halves(10, 96)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(full.x_test, expect)
    assert full.y_train.tolist() == [i % 10 for i in range(20)]        # 1..10 on disk -> 0..9
    ds = load_dataset("stl10", data_root=tmp_path)                      # default: the shared encoder's 32 px
    check_dataset(ds, 10)
    assert ds.name == f"stl10-{ds.content_hash[:8]}" and full.name == f"{ds.name}-96px"
    assert "resized from 96x96 to 32x32" in ds.note and "resized" not in full.note
    left, right = ds.x_test[:, 0, :, :14], ds.x_test[:, 0, :, 18:]
    assert float(left.max()) == -1 and torch.allclose(right, torch.full_like(right, 200 / 127.5 - 1))


def test_stl10_genuine_and_truncated(tmp_path, monkeypatch):
    folder = _write_fake_stl10(tmp_path)
    _publish(monkeypatch, folder)
    ds = load_dataset("stl10", data_root=tmp_path)
    assert ds.name == "stl10" and not ds.paper_comparable      # genuine, but not in the paper's tables
    assert load_dataset("stl10", data_root=tmp_path, image_size=64).name == "stl10-64px"
    (folder / "test_X.bin").write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError) as e:
        load_dataset("stl10", data_root=tmp_path)
    assert "test_X.bin" in one_line(e)


def _write_fake_svhn(root, n_train=30, n_test=12):
    from scipy.io import savemat
    for split, n in (("train", n_train), ("test", n_test)):
        x = _halves(n, 32).transpose(1, 2, 3, 0)                           # (32, 32, 3, N) as published
        y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]             # digits 1..10, 10 meaning 0
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


def test_fake_svhn_round_trip(tmp_path):
    _write_fake_svhn(tmp_path)
    ds = load_dataset("svhn", data_root=tmp_path)
    check_dataset(ds, 10)
    expect = torch.from_numpy(_halves(12, 32)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(ds.x_test, expect)
    assert ds.y_test.tolist() == [(i + 1) % 10 for i in range(12)]
    assert ds.name.startswith("svhn-") and not ds.paper_comparable
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DataError) as e:
        load_dataset("svhn", data_root=tmp_path)
    assert "test_32x32.mat" in one_line(e)
