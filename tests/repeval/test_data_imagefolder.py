"""``imagefolder:DIR`` (repeval/data/imagefolder.py) on a tiny PNG tree generated here: classes by folder
name, resized to the encoder's input size, the same checks as npz data, a content fingerprint in the label."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repeval.cli import main
from repeval.data import DataError, load_dataset
from repeval.registry import MODELS
from repeval.plugin.zoo import input_size_groups, register_encoder
from tests.helpers import check_dataset, one_line

CLASSES = ("cat", "dog", "eel")


def make_tree(root: Path, n_train: int = 6, n_test: int = 3, classes=CLASSES) -> Path:
    """DIR/{train,test}/<class>/<i>.png: class c's images bright in channel c; sizes vary (32x32, 20x28)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 60, (32, 32, 3) if i % 2 == 0 else (20, 28, 3), dtype=np.uint8)
                a[..., c % 3] += 150
                Image.fromarray(a).save(d / f"{i}.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image: skipped")
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "pets")


def test_classes_sizes_and_pixels(tree):
    ds = load_dataset(f"imagefolder:{tree}")
    check_dataset(ds, 3)
    assert ds.x_train.shape[0] == 18 and ds.x_test.shape[0] == 9
    assert ds.y_train.tolist() == [0] * 6 + [1] * 6 + [2] * 6          # sorted class folders, sorted files
    first = np.array(Image.open(tree / "train" / "cat" / "0.png"))      # 32x32: read as is, no resize
    assert torch.equal(ds.x_train[0], torch.from_numpy(first).permute(2, 0, 1).float() / 127.5 - 1)
    assert ds.x_train[:6, 0].mean() > ds.x_train[:6, 1].mean()          # cat is bright in red
    assert "3 classes (cat, dog, eel)" in ds.note and "resized from 20x28, 32x32 to 32x32 px" in ds.note
    assert not ds.paper_comparable


def test_label_is_a_content_fingerprint_and_says_the_size(tree, tmp_path):
    ds = load_dataset(f"imagefolder:{tree}")
    assert ds.name == f"pets-{ds.content_hash[:8]}"
    copy = shutil.copytree(tree, tmp_path / "copy" / "pets")
    assert load_dataset(f"imagefolder:{copy}").name == ds.name               # same content, same label
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(copy / "test" / "dog" / "0.png")
    assert load_dataset(f"imagefolder:{copy}").name != ds.name               # one image changed
    big = load_dataset(f"imagefolder:{tree}", image_size=48)
    check_dataset(big, 3, hw=(48, 48))
    assert big.name.endswith("-48px") and big.name != ds.name and "to 48x48 px" in big.note


def test_test_folders_map_onto_training_classes_by_name(tmp_path):
    root = make_tree(tmp_path / "t")
    shutil.rmtree(root / "test" / "cat")
    ds = load_dataset(f"imagefolder:{root}")
    assert sorted(set(ds.y_test.tolist())) == [1, 2] and ds.n_classes == 3


def _break(root: Path, how: str) -> None:
    if how == "no test":
        shutil.rmtree(root / "test")
    elif how == "no classes":
        for d in (root / "train").iterdir():
            shutil.rmtree(d) if d.is_dir() else d.unlink()
    elif how == "empty class":
        for f in (root / "train" / "dog").iterdir():
            f.unlink()
    elif how == "unknown test class":
        shutil.copytree(root / "test" / "dog", root / "test" / "fox")
    elif how == "bad file":
        (root / "train" / "eel" / "9.png").write_bytes(b"not a png")
    elif how == "one class":
        for c in ("dog", "eel"):
            shutil.rmtree(root / "train" / c)
            shutil.rmtree(root / "test" / c)
    elif how == "one test image":
        for c in ("dog", "eel"):
            shutil.rmtree(root / "test" / c)
        for f in sorted((root / "test" / "cat").iterdir())[1:]:
            f.unlink()


@pytest.mark.parametrize("how, words", [
    ("no test", "missing folder {root}/test"),
    ("no classes", "{root}/train has no class folders"),
    ("empty class", "class folder {root}/train/dog has no images"),
    ("unknown test class", "test class folder {root}/test/fox has no counterpart under {root}/train"),
    ("bad file", "cannot read image {root}/train/eel/9.png"),
    ("one class", "the training split has 1 class; need at least 2"),
    ("one test image", "{root}/test: 1 image(s); need at least 2 per split"),
])
def test_bad_trees_are_one_line_errors(tmp_path, how, words):
    root = make_tree(tmp_path / "bad")
    _break(root, how)
    with pytest.raises(DataError) as e:
        load_dataset(f"imagefolder:{root}")
    assert words.format(root=root) in one_line(e)


class Tiny(torch.nn.Module):
    """A plugin encoder that declares its input size."""

    input_size = 16

    def forward(self, x):
        return {"emb": x.mean(dim=(2, 3))}


def test_models_are_grouped_by_their_declared_input_size():
    register_encoder("tiny16", Tiny)
    try:
        assert MODELS.get("tiny16").input_size == 16
        assert input_size_groups(["ae", "tiny16", "random"]) == [(32, ["ae", "random"]), (16, ["tiny16"])]
    finally:
        MODELS.unregister("tiny16")


def test_run_resizes_to_each_encoders_input_size(tree, tmp_path, capsys):
    register_encoder("tiny16", Tiny)
    try:
        argv = ["run", "--dataset", f"imagefolder:{tree}", "--models", "random,tiny16", "--protocols", "knn",
                "--quiet", "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
        assert main(argv) == 0
    finally:
        MODELS.unregister("tiny16")
    out = capsys.readouterr().out
    labels = sorted((p.name for p in (tmp_path / "results").iterdir()), key=lambda n: not n.endswith("-16px"))
    assert len(labels) == 2 and labels[0].endswith("-16px") and labels[1].startswith("pets-")
    rec = json.loads(next((tmp_path / "results" / labels[0] / "records" / "tiny16").rglob("*.json")).read_text())
    assert rec["tap"] == "emb" and "to 16x16 px" in rec["dataset_note"] and rec["success"]
    assert "| tiny16 / emb " in out and "| Random init / y " in out       # each dataset's tables


def test_a_launch_needs_one_input_size(tree, capsys):
    register_encoder("tiny16", Tiny)
    try:
        assert main(["run", "--dataset", f"imagefolder:{tree}", "--models", "random,tiny16", "--executor", "local"]) == 2
    finally:
        MODELS.unregister("tiny16")
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "32 px: random; 16 px: tiny16" in err and "launch each size separately" in err
