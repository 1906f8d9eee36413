"""The checks every data source passes through (repeval/data/core.py): labels, split sizes, image layout,
classes, and images that do not fit an encoder."""
import pickle

import numpy as np
import pytest
import torch

from repeval.cli import main
from repeval.data import DataError, check_input_size, load_dataset
from repeval.engine.features import EncoderContractError, tap_names
from repeval.estimators.nets import SharedEncoder
from tests.helpers import cifar_entry, npz_folder, one_line, write_fake_cifar


def test_npz_integral_float_labels_are_accepted(tmp_path):
    ds = load_dataset(f"npz:{npz_folder(tmp_path / 'd', train={'y': (np.arange(30) % 4).astype(np.float32)})}")
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
    d = npz_folder(tmp_path / "bad", **override)
    with pytest.raises(DataError) as e:
        load_dataset(f"npz:{d}")
    assert words in one_line(e)


def test_cifar_labels_outside_the_published_classes(tmp_path):
    folder = write_fake_cifar(tmp_path)
    entry = cifar_entry(np.random.default_rng(0), 20)
    entry["labels"][0] = 10
    (folder / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert "label 10 outside [0, 10)" in one_line(e)


def test_image_size_mismatch_is_one_line(tmp_path, tiny_run, capsys):
    ds = load_dataset(f"npz:{npz_folder(tmp_path / 'big', hw=64)}")
    check_input_size(ds, ds.image_hw, "enc")
    with pytest.raises(DataError) as e:
        check_input_size(ds, (32, 32), "ae")
    assert "64x64" in one_line(e) and "32x32" in str(e.value)
    with pytest.raises(EncoderContractError) as e:
        tap_names(SharedEncoder(), ds.x_test[:2], "ae")
    assert "64x64 px" in one_line(e)
    assert main(tiny_run("--dataset", f"npz:{tmp_path / 'big'}")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "64x64" in err
