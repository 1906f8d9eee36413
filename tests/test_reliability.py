"""Hostile and careless inputs through the CLI: each ends with a non-zero exit, at most two lines on
stderr and no traceback, and leaves every record already present byte-identical."""
import hashlib
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from repeval.cli import main
from repeval.nets import SharedEncoder
from repeval.registry import MODELS

BASE = ["--models", "ae", "--protocols", "mlp", "--set", "train.epochs=1", "--set", "train.max_train=256",
        "--set", "mlp.epochs=1"]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny run whose records every bad input below must leave untouched."""
    root = tmp_path_factory.mktemp("reliability")
    args = ["run", *BASE, "--quiet", "--no-table", "--workdir", str(root / "work"), "--results", str(root / "results")]
    assert main(args) == 0
    return root


def _snapshot(results: Path) -> dict[str, str]:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file()}


class Hostile(Exception):
    pass


class _Code:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE_MARKER",))


def _npz(folder: Path, x_train, y_train, x_test=None, y_test=None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=x_train, y=y_train)
    np.savez(folder / "test.npz", x=x_train if x_test is None else x_test, y=y_train if y_test is None else y_test)
    return f"npz:{folder}"


def _imgs(n, size=32):
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def _cases(tmp: Path) -> dict[str, list[str]]:
    """name -> argv after the global options; files are made here, in ``tmp``."""
    torch.save({"conv.weight": torch.zeros(3)}, tmp / "wrong_shapes.pt")
    sd = SharedEncoder(3).state_dict()
    first = next(iter(sd))
    sd[first] = torch.zeros(*[s + 1 for s in sd[first].shape])
    torch.save(sd, tmp / "changed_layer.pt")
    (tmp / "corrupt.pt").write_bytes(b"not a checkpoint" * 10)
    with open(tmp / "hostile.pt", "wb") as f:
        pickle.dump(_Code(), f)
    (tmp / "bad_taps.py").write_text(
        "import torch\nfrom torch import nn\nfrom repeval import register_encoder\n"
        "class E(nn.Module):\n    def forward(self, x):\n        return {'../../x': x.flatten(1)}\n"
        "register_encoder('badtaps', E)\n")
    (tmp / "not_mapping.py").write_text(
        "from torch import nn\nfrom repeval import register_encoder\n"
        "class E(nn.Module):\n    def forward(self, x):\n        return x.flatten(1)\n"
        "register_encoder('notmap', E)\n")
    (tmp / "raises.py").write_text("raise RuntimeError('plugin broken on purpose')\n")
    (tmp / "bad_name.py").write_text(
        "from torch import nn\nfrom repeval import register_encoder\nregister_encoder('../../escape', nn.Identity)\n")
    cifar = tmp / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for fn in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cifar / fn, "wb") as f:
            pickle.dump(_Code(), f, protocol=2)
    (tmp / "afile").write_text("x")
    y = np.arange(20) % 2
    run = ["run", "--quiet", "--no-table"]
    m = ["--models", "ae", "--protocols", "mlp"]
    return {
        "unknown model": [*run, "--models", "nosuch"],
        "unknown protocol": [*run, "--protocols", "nosuch"],
        "unknown preset": [*run, "--preset", "nosuch"],
        "bad config key": [*run, *m, "--set", "train.nosuch=1"],
        "bad config section": [*run, *m, "--set", "nosuch.x=1"],
        "malformed --set": [*run, *m, "--set", "train.epochs"],
        "seeds 0": [*run, *m, "--seeds", "0"],
        "seeds -1": [*run, *m, "--seeds", "-1"],
        "negative probe epochs": [*run, *m, "--set", "mlp.epochs=-3"],
        "zero batch": [*run, *m, "--set", "train.batch_size=0"],
        "negative lr": [*run, *m, "--set", "train.lr=-1"],
        "nan lr": [*run, *m, "--set", "train.lr=nan"],
        "max_train below a batch": [*run, *m, "--set", "train.max_train=10"],
        "eval epoch past the end": [*run, *m, "--set", "train.epochs=1", "--set", "train.eval_epochs=5"],
        "unknown DIM estimator": [*run, "--models", "dim-g", "--protocols", "mlp", "--set", "dim.estimator=nosuch"],
        "device foo": [*run, *m, "--device", "foo"],
        "rerun of a model not requested": [*run, *m, "--rerun", "vae"],
        "hostile pretrained name": ["--pretrained", f"../../../../x={tmp / 'changed_layer.pt'}", *run, "--models", "x"],
        "absolute pretrained name": ["--pretrained", f"/abs={tmp / 'changed_layer.pt'}", *run],
        "missing checkpoint": ["--pretrained", f"p1={tmp / 'missing.pt'}", *run, "--models", "p1", "--protocols", "mlp"],
        "corrupt checkpoint": ["--pretrained", f"p2={tmp / 'corrupt.pt'}", *run, "--models", "p2", "--protocols", "mlp"],
        "checkpoint with code": ["--pretrained", f"p3={tmp / 'hostile.pt'}", *run, "--models", "p3", "--protocols", "mlp"],
        "state dict of another model": ["--pretrained", f"p4={tmp / 'wrong_shapes.pt'}", *run, "--models", "p4"],
        "changed layer shapes": ["--pretrained", f"p5={tmp / 'changed_layer.pt'}", *run, "--models", "p5"],
        "plugin tap named ../../x": ["--plugin", str(tmp / "bad_taps.py"), *run, "--models", "badtaps", "--protocols", "mlp"],
        "plugin encoder returning a tensor": ["--plugin", str(tmp / "not_mapping.py"), *run, "--models", "notmap",
                                              "--protocols", "mlp"],
        "plugin that raises": ["--plugin", str(tmp / "raises.py"), "list"],
        "plugin model name with a path": ["--plugin", str(tmp / "bad_name.py"), "list"],
        "missing plugin file": ["--plugin", str(tmp / "nosuch.py"), "list"],
        "missing npz folder": [*run, *m, "--dataset", f"npz:{tmp / 'nosuch'}"],
        "64 px images for a 32 px encoder": [*run, *m, "--dataset", _npz(tmp / "big", _imgs(20, 64), y)],
        "string labels": [*run, *m, "--dataset", _npz(tmp / "strlab", _imgs(20), np.array(["a", "b"] * 10))],
        "fractional labels": [*run, *m, "--dataset", _npz(tmp / "fraclab", _imgs(20), y + 0.5)],
        "single class": [*run, *m, "--dataset", _npz(tmp / "oneclass", _imgs(20), np.zeros(20, int))],
        "one image": [*run, *m, "--dataset", _npz(tmp / "oneimg", _imgs(1), np.zeros(1, int))],
        "test class absent from training": [*run, *m, "--dataset", _npz(tmp / "absent", _imgs(20), y, _imgs(20),
                                                                         np.full(20, 2))],
        "crafted CIFAR pickle": [*run, *m, "--dataset", "cifar10", "--data-root", str(tmp / "cifar")],
        "results folder under a file": [*run, *BASE[4:], "--models", "random", "--results", str(tmp / "afile" / "r")],
        "workdir under a file": [*run, *BASE[4:], "--models", "random", "--workdir", str(tmp / "afile" / "w")],
    }


def test_bad_inputs_fail_in_one_line_and_keep_every_record(done, tmp_path, capsys, monkeypatch):
    cases = _cases(tmp_path)
    assert len(cases) >= 25
    monkeypatch.chdir(tmp_path)
    before = _snapshot(done / "results")
    registered = dict(MODELS._items)
    failures = []
    for name, argv in cases.items():
        if "--results" not in argv:
            argv = [*argv, "--results", str(done / "results")] if "run" in argv else argv
        if "--workdir" not in argv and "run" in argv:
            argv = [*argv, "--workdir", str(done / "work")]
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as warned:     # a warning would be stderr lines too
            warnings.simplefilter("always")
            try:
                rc = main(argv)
            except SystemExit as e:     # argparse usage errors
                rc = e.code
        err = capsys.readouterr().err.strip().splitlines() + [f"warning: {w.message}" for w in warned]
        MODELS._items.clear()
        MODELS._items.update(registered)
        if rc == 0 or len(err) > 2 or any("Traceback" in line for line in err):
            failures.append(f"{name}: rc={rc} stderr={err[-3:]}")
    assert not (tmp_path / "HOSTILE_MARKER").exists(), "a hostile pickle ran code"
    assert not failures, "\n".join(failures)
    assert _snapshot(done / "results") == before
    assert not list(Path(done / "results").parent.glob("x*")), "a hostile name wrote outside results/"
