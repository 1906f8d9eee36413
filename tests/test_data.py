import os
import pickle
import pickletools

import numpy as np
import pytest
import torch

from repeval import data_torchvision
from repeval.cli import main
from repeval.data import KNOWN_NPZ, DataError, Source, check_input_size, load_dataset
from repeval.data_pickle import _ALLOWED
from repeval.features import EncoderContractError, tap_names
from repeval.nets import SharedEncoder


def _check(ds, n_classes, hw=(32, 32)):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1:] == (3, *hw)
        assert x.min() >= -1 and x.max() <= 1
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    assert ds.n_classes == n_classes


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


def test_digits_shapes_ranges_and_fixed_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    _check(a, 10)
    assert a.x_train.shape[0] == 1437 and a.x_test.shape[0] == 360
    assert torch.equal(a.x_test, b.x_test) and a.fingerprint == b.fingerprint
    assert a.name == "digits" and not a.paper_comparable and len(a.content_hash) == 64
    # stratified: every class in both splits in about the same proportion
    assert torch.bincount(a.y_test).min() >= 30
    big = load_dataset("digits", image_size=48)
    assert big.name == "digits-48px" and big.image_hw == (48, 48)


# ---------------------------------------------------------------- CIFAR (torchvision's pickles)

def _cifar_entry(rng, n, label_key="labels", n_classes=10):
    return {"batch_label": "training batch", "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            label_key: [int(i % n_classes) for i in range(n)], "filenames": [b"img_%d.png" % i for i in range(n)]}


def _write_fake_cifar(root, n=20, seed=0):
    """The layout and pickling of the published archive: protocol 2, a dict per batch file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_cifar_entry(rng, n), protocol=2))
    return folder


def test_cifar_pickle_needs_only_the_allowed_globals(tmp_path):
    folder = _write_fake_cifar(tmp_path)
    ops = list(pickletools.genops((folder / "test_batch").read_bytes()))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    names = {tuple(arg.split(" ")) for op, arg, _ in ops if op.name == "GLOBAL"}
    assert names and names <= set(_ALLOWED)
    assert ("numpy", "ndarray") in names and ("numpy", "dtype") in names


def test_fake_cifar10_in_torchvision_format(tmp_path):
    folder = _write_fake_cifar(tmp_path)
    # the archives were written by numpy 1.x: the same stream under its module name loads too
    p = folder / "data_batch_5"
    p.write_bytes(p.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    ds = load_dataset("cifar10", data_root=tmp_path)
    _check(ds, 10)
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
    folder = _write_fake_cifar(tmp_path)
    _publish(monkeypatch, folder)
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert ds.name == "cifar10" and ds.paper_comparable
    assert load_dataset("cifar10", data_root=tmp_path, image_size=64).name == "cifar10-64px"
    assert not load_dataset("cifar10", data_root=tmp_path, image_size=64).paper_comparable


def test_download_must_match_published_checksums(tmp_path, monkeypatch):
    calls = []

    def fake_published(fmt):   # a "download" that delivers files unlike the published ones
        return {}, lambda root: calls.append(_write_fake_cifar(root))
    monkeypatch.setattr(data_torchvision, "_published", fake_published)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path, download=True)
    assert len(calls) == 1 and "published md5" in _one_line(e)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, n in (("train", 300), ("test", 100)):
        (folder / name).write_bytes(pickle.dumps(_cifar_entry(rng, n, "fine_labels", 100), protocol=2))
    ds = load_dataset("cifar100", data_root=tmp_path)
    _check(ds, 100)
    assert ds.name.startswith("cifar100-") and ds.y_train.tolist()[:101] == list(range(100)) + [0]


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "nested", "codec", "protocol5"])
def test_crafted_cifar_pickle_does_not_run(tmp_path, how, capsys):
    folder = _write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    entry = _cifar_entry(np.random.default_rng(0), 20)
    if how == "os.system":
        payload = pickle.dumps(_Evil(os.system, cmd), protocol=2)
    elif how == "builtins.exec":
        payload = pickle.dumps(_Evil(exec, f"open({str(marker)!r}, 'w').close()"), protocol=2)
    elif how == "nested":   # a valid-looking batch whose label list hides the payload
        entry["labels"][3] = _Evil(os.system, cmd)
        payload = pickle.dumps(entry, protocol=2)
    elif how == "codec":    # an allowed global called with a codec other than latin-1
        payload = pickle.dumps(entry, protocol=2).replace(b"latin1", b"rot_13")
    else:                   # protocol 5 arrays use a rebuilder the archives never need
        payload = pickle.dumps(entry, protocol=5)
    (folder / "data_batch_1").write_bytes(payload)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "data_batch_1" in _one_line(e) and "not a CIFAR batch file" in str(e.value)
    assert not marker.exists()
    # and through the CLI: exit 2, one line on stderr, nothing executed
    assert main(["run", "--models", "ae", "--dataset", "cifar10", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data_batch_1" in err and not marker.exists()


@pytest.mark.parametrize("payload", [
    b"", b"garbage\x00\xff", pickle.dumps({"data": 1}, protocol=2)[:-5], pickle.dumps([1, 2], protocol=2),
    pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, protocol=2),
    pickle.dumps({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, protocol=2),
    pickle.dumps({"data": np.zeros((4, 3072), np.uint8)}, protocol=2)])
def test_malformed_cifar_file_is_one_line(tmp_path, payload):
    folder = _write_fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "test_batch" in _one_line(e)


def test_missing_cifar_names_path_and_flag(tmp_path, capsys):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(tmp_path) in _one_line(e) and "--download" in str(e.value)
    assert main(["run", "--models", "ae", "--dataset", "cifar100", "--data-root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cifar-100-python" in err


# ---------------------------------------------------------------- STL-10 and SVHN

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
    _check(full, 10, (96, 96))
    expect = torch.from_numpy(_halves(10, 96)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(full.x_test, expect)
    assert full.y_train.tolist() == [i % 10 for i in range(20)]        # 1..10 on disk -> 0..9
    ds = load_dataset("stl10", data_root=tmp_path)                      # default: the shared encoder's 32 px
    _check(ds, 10)
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
    assert "test_X.bin" in _one_line(e)


def _write_fake_svhn(root, n_train=30, n_test=12):
    from scipy.io import savemat
    for split, n in (("train", n_train), ("test", n_test)):
        x = _halves(n, 32).transpose(1, 2, 3, 0)                           # (32, 32, 3, N) as published
        y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]             # digits 1..10, 10 meaning 0
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


def test_fake_svhn_round_trip(tmp_path):
    _write_fake_svhn(tmp_path)
    ds = load_dataset("svhn", data_root=tmp_path)
    _check(ds, 10)
    expect = torch.from_numpy(_halves(12, 32)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(ds.x_test, expect)
    assert ds.y_test.tolist() == [(i + 1) % 10 for i in range(12)]
    assert ds.name.startswith("svhn-") and not ds.paper_comparable
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DataError) as e:
        load_dataset("svhn", data_root=tmp_path)
    assert "test_32x32.mat" in _one_line(e)


# ---------------------------------------------------------------- npz folders: labels and checks

def _npz(d, n_train=30, n_test=10, hw=32, classes=4, seed=1, **override):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        arrays = {"x": rng.integers(0, 256, (n, hw, hw, 3), dtype=np.uint8), "y": np.arange(n) % classes}
        arrays.update(override.get(split, {}))
        np.savez(d / f"{split}.npz", **arrays)
    return d


def test_npz_dataset_labels_are_unique_per_content(tmp_path):
    a = load_dataset(f"npz:{_npz(tmp_path / 'one' / 'mydata')}")
    _check(a, 4)
    assert a.name == f"mydata-{a.content_hash[:8]}" and not a.paper_comparable and a.x_train.shape[0] == 30
    same = load_dataset(f"npz:{_npz(tmp_path / 'copy' / 'mydata')}")
    other = load_dataset(f"npz:{_npz(tmp_path / 'two' / 'mydata', seed=2)}")
    assert same.name == a.name and other.name != a.name
    # a folder cannot borrow a built-in or paper label
    for fake in ("cifar10", "digits", "cifar10-jpeg"):
        ds = load_dataset(f"npz:{_npz(tmp_path / fake)}")
        assert ds.name.startswith(f"{fake}-") and ds.name != fake and not ds.paper_comparable
    odd = load_dataset(f"npz:{_npz(tmp_path / '..odd name;$x')}")
    assert odd.name.startswith("odd_name_x-")


def test_npz_known_content_keeps_its_label(tmp_path, monkeypatch):
    d = _npz(tmp_path / "anything")
    digest = load_dataset(f"npz:{d}").content_hash
    monkeypatch.setitem(KNOWN_NPZ, digest, Source("cifar10-jpeg", True, "pinned", paper_comparable=True))
    ds = load_dataset(f"npz:{d}")
    assert ds.name == "cifar10-jpeg" and ds.paper_comparable and ds.note == "pinned"


def test_npz_integral_float_labels_are_accepted(tmp_path):
    ds = load_dataset(f"npz:{_npz(tmp_path / 'd', train={'y': (np.arange(30) % 4).astype(np.float32)})}")
    assert ds.y_train.dtype == torch.int64 and ds.n_classes == 4


@pytest.mark.parametrize("override, words", [
    ({"train": {"y": np.arange(30) % 4 + 0.5}}, "integers, found 0.5"),
    ({"test": {"y": np.array([0, 1, np.nan] + [0] * 7)}}, "integers, found nan"),
    ({"train": {"y": np.array(["cat", "dog"] * 15)}}, "labels must be integers"),
    ({"train": {"y": np.zeros(30, int)}}, "need at least 2"),
    ({"test": {"y": np.full(10, 3)}, "train": {"y": np.arange(30) % 3}}, "test class(es) [3] never occur"),
    ({"train": {"y": np.arange(30) % 4 - 1}}, "negative label -1"),
    ({"train": {"y": np.zeros((30, 1), int)}}, "shape (N,)"),
    ({"train": {"y": np.arange(29) % 4}}, "30 images but 29 labels"),
    ({"train": {"x": np.zeros((0, 32, 32, 3), np.uint8), "y": np.zeros(0, int)}}, "0 image(s)"),
    ({"test": {"x": np.zeros((1, 32, 32, 3), np.uint8), "y": np.zeros(1, int)}}, "1 image(s)"),
    ({"train": {"x": np.zeros((30, 32, 32, 3), np.float32)}}, "uint8 (N, H, W, 3)"),
    ({"train": {"x": np.zeros((30, 3, 32, 32), np.uint8)}}, "uint8 (N, H, W, 3)"),
    ({"test": {"x": np.zeros((10, 16, 16, 3), np.uint8)}}, "test images 16x16 px"),
])
def test_npz_bad_data_is_one_line(tmp_path, override, words):
    d = _npz(tmp_path / "bad", **override)
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert words in _one_line(e)


def test_npz_missing_or_unreadable(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_dataset(f"npz:{tmp_path}")
    d = _npz(tmp_path / "d")
    (d / "test.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert "test.npz" in _one_line(e)
    np.savez(d / "test.npz", x=np.zeros((4, 32, 32, 3), np.uint8))    # no 'y'
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert "test.npz" in _one_line(e)


def test_cifar_labels_outside_the_published_classes(tmp_path):
    folder = _write_fake_cifar(tmp_path)
    entry = _cifar_entry(np.random.default_rng(0), 20)
    entry["labels"][0] = 10
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "label 10 outside [0, 10)" in _one_line(e)


# ---------------------------------------------------------------- images that do not fit an encoder

def test_image_size_mismatch_is_one_line(tmp_path, tiny_run, capsys):
    ds = load_dataset(f"npz:{_npz(tmp_path / 'big', hw=64)}")
    check_input_size(ds, ds.image_hw, "enc")
    with pytest.raises(DataError) as e:
        check_input_size(ds, (32, 32), "ae")
    assert "64x64" in _one_line(e) and "32x32" in str(e.value)
    with pytest.raises(EncoderContractError) as e:
        tap_names(SharedEncoder(), ds.x_test[:2], "ae")
    assert "64x64 px" in _one_line(e)
    assert main(tiny_run("--dataset", f"npz:{tmp_path / 'big'}")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "64x64" in err
