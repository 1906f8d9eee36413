"""The command line (repeval/cli.py): global options on either side of the subcommand, `repeval config`,
`repeval list`, `--log-file`, SIGTERM, and hostile or careless inputs: each ends with a non-zero exit, at
most two lines on stderr and no traceback, and leaves every record already present byte-identical."""
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import repeval.cli as cli
import repeval.storage as storage
from repeval.cli import main
from repeval.nets import SharedEncoder
from repeval.registry import MODELS, PROTOCOLS

pytestmark = pytest.mark.usefixtures("restore_logging")

PLUGIN = """
import torch
from torch import nn
from repeval import register_encoder


class Flat(nn.Module):
    def forward(self, x):
        return {{"pix": nn.functional.avg_pool2d(x, 8).flatten(1)}}   # 48 numbers per image: cheap


register_encoder("{name}", Flat)
"""



def _plugin(tmp_path, name):
    p = tmp_path / f"{name}.py"
    p.write_text(PLUGIN.format(name=name))
    return str(p)


def test_global_options_before_and_after_the_subcommand(tmp_path, capsys):
    early, late = _plugin(tmp_path, "cli-early"), _plugin(tmp_path, "cli-late")
    assert main(["--plugin", early, "list", "--plugin", late, "-q"]) == 0
    out = capsys.readouterr().out
    assert "cli-early" in out and "cli-late" in out and {"cli-early", "cli-late"} <= set(MODELS.names())
    args = cli._merge_globals(cli.build_parser().parse_args(
        ["-v", "--plugin", "a.py", "--log-file", "x.log", "run", "-v", "--plugin", "b.py", "--pretrained", "m=p.pt",
         "--backbone", "r=torchvision:resnet18", "--log-file", "y.log", "-q"]))
    assert args.plugin == ["a.py", "b.py"] and args.pretrained == ["m=p.pt"]
    assert args.backbone == ["r=torchvision:resnet18"] and args.verbose == 2 and args.quiet
    assert str(args.log_file) == "y.log" and not any(k.startswith("sub_") for k in vars(args))


def test_config_prints_every_resolved_section(capsys):
    assert main(["config", "--preset", "quick", "--set", "mlp.epochs=7", "--set", "train.lr=0.5"]) == 0
    out = capsys.readouterr().out
    headers = [line[1:-1] for line in out.splitlines() if line.startswith("[")]
    assert headers[:1 + len(PROTOCOLS)] == ["train", *PROTOCOLS.names()]
    assert {"vae.vae", "vae.beta-vae"} <= set(headers)            # family sections, one per registration

    def section(name):
        return out.split(f"[{name}]\n")[1].split("\n[")[0]
    assert "lr = 0.5" in section("train") and "epochs = 7" in section("mlp")
    assert "beta = 4.0" in section("vae.beta-vae") and "beta = 1.0" in section("vae.vae")

    assert main(["config", "--format", "json", "--protocols", "mlp", "--set", "mlp.epochs=7",
                 "--set", "vae.beta=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["preset"] == "quick" and list(data["sections"])[:2] == ["train", "mlp"] and "svm" not in data["sections"]
    assert data["sections"]["mlp"]["epochs"] == 7 and data["sections"]["train"]["epochs"] == 1
    assert data["sections"]["vae.beta-vae"]["beta"] == 2 == data["sections"]["vae.vae"]["beta"]


@pytest.mark.parametrize("argv, words", [
    (["config", "--set", "mlp.nosuch=1"], "bad config key 'mlp.nosuch'"),
    (["config", "--set", "train.epochs=many"], "train.epochs: cannot read 'many' as int"),
    (["config", "--preset", "huge"], "unknown preset 'huge'"),
    (["config", "--protocols", "nosuch"], "unknown protocol 'nosuch'"),
])
def test_config_errors_are_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("repeval: error: ") and words in err


def test_run_quiet_with_log_file(tmp_path, tiny_run, capsys):
    logfile = tmp_path / "run.log"
    plugin = _plugin(tmp_path, "cli-flat")
    assert main(tiny_run("--plugin", plugin, "--log-file", str(logfile), "--set", "mlp.epochs=1",
                         models="cli-flat")) == 0          # tiny_run passes --quiet
    err = capsys.readouterr().err
    assert "[cli-flat]" not in err and "1 records written" in err
    text = logfile.read_text()
    lines = [line for line in text.splitlines() if "[cli-flat]" in line]
    assert any("encoder ready" in line for line in lines) and any("mlp/pix/seed0" in line for line in lines)
    assert main(["run", "--models", "nosuch", "--log-file", str(logfile)]) == 2
    assert "ERROR unknown model 'nosuch'" in logfile.read_text()


def test_list_shows_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("models:", "protocols:", "datasets:", "presets:", "ae", "mlp", "digits", "npz:DIR", "quick"):
        assert word in out


def test_sigterm_is_handled_like_ctrl_c_and_stale_tmp_files_are_swept(tmp_path):
    w, r = tmp_path / "w", tmp_path / "r"
    stale = r / "digits" / f".x.json.{storage._HOST}-999999.abc.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by a kill -9")
    cmd = [sys.executable, "-m", "repeval", "run", "--models", "ae", "--protocols", "mlp", "--quiet",
           "--no-table", "--workdir", str(w), "--results", str(r), "--set", "train.epochs=50",
           "--set", "train.max_train=256", "--set", "mlp.epochs=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(w.rglob("train.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1].strip().splitlines()
    assert proc.returncode == 143, err
    assert len(err) == 1 and "terminated (SIGTERM)" in err[0]
    assert not stale.exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ------------------------------------------------------------------------- hostile and careless inputs

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
