"""Datasets (repeval/data.py): the embedded digits, and `npz:DIR` folders (labels unique per content,
known content, missing or unreadable files)."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from repeval.data import KNOWN_NPZ, DataError, Source, load_dataset
from tests.helpers import check_dataset, npz_folder, one_line


def test_the_fingerprint_is_computed_once_and_follows_the_content():
    ds = load_dataset("digits")
    assert ds.fingerprint is ds.fingerprint          # cached: every record's identity asks for it
    assert dataclasses.replace(ds, x_test=ds.x_test.flip(0)).fingerprint != ds.fingerprint


def test_digits_shapes_ranges_and_fixed_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    check_dataset(a, 10)
    assert a.x_train.shape[0] == 1437 and a.x_test.shape[0] == 360
    assert torch.equal(a.x_test, b.x_test) and a.fingerprint == b.fingerprint
    assert a.name == "digits" and not a.paper_comparable and len(a.content_hash) == 64
    # stratified: every class in both splits in about the same proportion
    assert torch.bincount(a.y_test).min() >= 30
    big = load_dataset("digits", image_size=48)
    assert big.name == "digits-48px" and big.image_hw == (48, 48)


def test_digits_are_scikit_learns_digits_and_split_read_without_importing_it():
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    from repeval.data import DIGITS_HASH, content_hash, digits_arrays, digits_split

    sk = sk_digits()
    images, target = digits_arrays()
    assert np.array_equal(images, sk.images) and np.array_equal(target, sk.target)
    assert content_hash(images, target) == DIGITS_HASH
    idx = np.arange(len(target))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=target)
    ours = digits_split(target, DIGITS_HASH)
    assert np.array_equal(ours[0], np.sort(tr)) and np.array_equal(ours[1], np.sort(te))
    # other content (not the stored split's): scikit-learn's split computed for it
    other = np.roll(target, 7)
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=other)
    assert np.array_equal(digits_split(other, content_hash(images, other))[1], np.sort(te)) and not np.array_equal(np.sort(te), ours[1])
    # the embedded dataset loads in a process that never imports scikit-learn
    code = "import sys; from repeval.data import load_dataset; load_dataset('digits'); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_npz_dataset_labels_are_unique_per_content(tmp_path):
    a = load_dataset(f"npz:{npz_folder(tmp_path / 'one' / 'mydata')}")
    check_dataset(a, 4)
    assert a.name == f"mydata-{a.content_hash[:8]}" and not a.paper_comparable and a.x_train.shape[0] == 30
    same = load_dataset(f"npz:{npz_folder(tmp_path / 'copy' / 'mydata')}")
    other = load_dataset(f"npz:{npz_folder(tmp_path / 'two' / 'mydata', seed=2)}")
    assert same.name == a.name and other.name != a.name
    # a folder cannot borrow a built-in or paper label
    for fake in ("cifar10", "digits", "cifar10-jpeg"):
        ds = load_dataset(f"npz:{npz_folder(tmp_path / fake)}")
        assert ds.name.startswith(f"{fake}-") and ds.name != fake and not ds.paper_comparable
    odd = load_dataset(f"npz:{npz_folder(tmp_path / '..odd name;$x')}")
    assert odd.name.startswith("odd_name_x-")


def test_npz_known_content_keeps_its_label(tmp_path, monkeypatch):
    d = npz_folder(tmp_path / "anything")
    digest = load_dataset(f"npz:{d}").content_hash
    monkeypatch.setitem(KNOWN_NPZ, digest, Source("cifar10-jpeg", True, "pinned", paper_comparable=True))
    ds = load_dataset(f"npz:{d}")
    assert ds.name == "cifar10-jpeg" and ds.paper_comparable and ds.note == "pinned"


def test_npz_missing_or_unreadable(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_dataset(f"npz:{tmp_path}")
    d = npz_folder(tmp_path / "d")
    (d / "test.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert "test.npz" in one_line(e)
    np.savez(d / "test.npz", x=np.zeros((4, 32, 32, 3), np.uint8))    # no 'y'
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert "test.npz" in one_line(e)
