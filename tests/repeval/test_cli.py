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
import repeval.store.storage as storage
from repeval.cli import main
from repeval.estimators.nets import SharedEncoder
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


def _bomb(folder: Path, shape) -> str:
    """An npz folder whose train.npz declares images of ``shape`` but holds 1 kB (a decompression bomb's
    header: np.load would allocate the declared size before reading)."""
    import io
    import zipfile
    folder.mkdir(parents=True)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.arange(20) % 2)
    for split in ("train", "test"):
        with zipfile.ZipFile(folder / f"{split}.npz", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("x.npy", head.getvalue() + bytes(1000))
            z.writestr("y.npy", labels.getvalue())
    return f"npz:{folder}"


# What the newer cases must say (issue 26): name -> words in the one stderr line
WORDS = {
    "npz decompression bomb": "would take 28.6 GiB",
    "npz header larger than its data": "declares 61440 bytes but the archive holds 1000",
    "log file on a full device": "/dev/full: is a character device, not a regular file",
    "uint64 labels near 2**64": "label 18446744073709551615 is implausible",
    "labels up to 10**12": "label 1000000000000 is implausible",
    "1x1 images": "fails on images of 3x1x1",
    "pretrained is a directory": "is a directory, not a file",
    "pretrained is a device": "is a character device, not a file",
    "duplicate pretrained names": "defined at --pretrained d=a.pt and again at --pretrained d=b.pt",
    "duplicate model name in a plugin": "dup_ae.py:3",
    "plugin calling sys.exit(0)": "called sys.exit(0)",
    "seeds above the bound (dry run)": "--seeds must be in [1, 100]",
    "epochs above the bound (dry run)": "train.epochs must be <= 100000",
    "critic width above the bound (dry run)": "dim.critic_units must be <= 65536",
    "jobs above the bound": "--jobs must be in [1, 10000]",
    "table --dataset with a path": "--dataset: bad dataset label name '../..'",
}


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
    (tmp / "quits.py").write_text("import sys\nsys.exit(0)\n")
    (tmp / "dup_ae.py").write_text("from torch import nn\nfrom repeval import register_encoder\n"
                                   "register_encoder('ae', nn.Identity)\n")
    (tmp / "adir").mkdir()
    y = np.arange(20) % 2
    u64 = y.astype(np.uint64)
    u64[3] = np.iinfo(np.uint64).max
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
        "npz decompression bomb": [*run, *m, "--dataset", _bomb(tmp / "bomb", (10 ** 7, 32, 32, 3))],
        "npz header larger than its data": [*run, *m, "--dataset", _bomb(tmp / "bomb2", (20, 32, 32, 3))],
        "log file on a full device": ["--log-file", "/dev/full", *run, *m],
        "uint64 labels near 2**64": [*run, *m, "--dataset", _npz(tmp / "u64", _imgs(20), u64)],
        "labels up to 10**12": [*run, *m, "--dataset", _npz(tmp / "bigl", _imgs(20), y * 10 ** 12)],
        "1x1 images": [*run, *m, "--dataset", _npz(tmp / "px1", _imgs(20, 1), y)],
        "pretrained is a directory": ["--pretrained", f"pd={tmp / 'adir'}", *run, "--models", "pd", "--protocols", "mlp"],
        "pretrained is a device": ["--pretrained", "pz=/dev/zero", *run, "--models", "pz", "--protocols", "mlp"],
        "duplicate pretrained names": ["--pretrained", "d=a.pt", "--pretrained", "d=b.pt", "list"],
        "duplicate model name in a plugin": ["--plugin", str(tmp / "dup_ae.py"), "list"],
        "plugin calling sys.exit(0)": ["--plugin", str(tmp / "quits.py"), *run, *m],
        "seeds above the bound (dry run)": [*run, *m, "--seeds", "1000000", "--dry-run"],
        "epochs above the bound (dry run)": [*run, *m, "--set", "train.epochs=1000000000", "--dry-run"],
        "critic width above the bound (dry run)": [*run, "--models", "dim-g", "--protocols", "mlp",
                                                   "--set", "dim.critic_units=10000000", "--dry-run"],
        "jobs above the bound": [*run, *m, "--executor", "local", "--jobs", "1000000"],
        "table --dataset with a path": ["table", "--dataset", "../..", "--results", str(tmp / "results")],
    }


def test_bad_inputs_fail_in_one_line_and_keep_every_record(done, tmp_path, capsys, monkeypatch):
    cases = _cases(tmp_path)
    assert len(cases) >= 25 and set(WORDS) <= set(cases)
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
        if rc == 0 or len(err) > 2 or any("Traceback" in line for line in err) or (
                name in WORDS and not any(WORDS[name] in line for line in err)):
            failures.append(f"{name}: rc={rc} stderr={err[-3:]}")
    assert not (tmp_path / "HOSTILE_MARKER").exists(), "a hostile pickle ran code"
    assert not failures, "\n".join(failures)
    assert _snapshot(done / "results") == before
    assert not list(Path(done / "results").parent.glob("x*")), "a hostile name wrote outside results/"


def test_record_files_that_are_not_regular_files_are_skipped_in_one_line_each(done, tmp_path, capsys):
    """A FIFO (would block a plain open), a link to a device, a folder named like a record, deeply nested
    JSON and a huge file: each one line, none read unbounded, the valid records all counted."""
    import shutil
    results = tmp_path / "results"
    shutil.copytree(done / "results", results)
    folder = results / "digits" / "records" / "ae" / "mlp"
    n_valid = len(list(folder.glob("*.json")))
    os.mkfifo(folder / "fifo.json")
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "dir.json").mkdir()
    (folder / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    with open(folder / "huge.json", "wb") as f:
        f.truncate(storage.MAX_JSON_BYTES + 1)          # sparse: no disk used
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--dataset", "digits", "--no-plots", "--format", "csv"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 5, warned
    for words in ("fifo.json: a FIFO", "zero.json: a symbolic link", "dir.json: a directory", "nested too deeply",
                  "huge.json: unreadable record (larger than 64 MiB)"):
        assert any(words in line for line in warned), (words, warned)
    recs, problems = cli_tables().load_records(results, "digits")
    assert len(recs) == n_valid and len(problems) == 5


def cli_tables():
    from repeval.report import tables
    return tables


def test_ctrl_c_while_importing_is_one_line_and_exit_130():
    code = ("import builtins, sys\nreal = builtins.__import__\n"
            "def imp(name, *a, **k):\n    if name == 'torch':\n        raise KeyboardInterrupt\n"
            "    return real(name, *a, **k)\nbuiltins.__import__ = imp\n"
            "from repeval.entry import main\nsys.exit(main(['list']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and proc.stderr.strip() == "repeval: interrupted while starting; nothing was done"


def test_file_size_limit_names_the_folder_and_the_file(tmp_path):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    cmd = [sys.executable, "-m", "repeval", "run", "--models", "random", "--protocols", "mlp", "--quiet",
           "--no-table", "--seeds", "1", "--workdir", str(tmp_path / "w"), "--results", str(tmp_path / "r"),
           "--set", "mlp.epochs=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, preexec_fn=limit)
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, err
    assert any("File too large" in line and "(in the work folder" in line and str(tmp_path / "w") in line
               for line in err), err


def test_a_full_disk_names_the_folder_and_the_file(tmp_path, tiny_run, capsys, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(storage.os, "fsync", full)
    assert main(tiny_run(models="random")) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert any("No space left on device" in line and "(in the work folder" in line for line in err), err


def test_one_unwritable_record_folder_fails_that_model_only(tmp_path, tiny_run, capsys):
    plugin = _plugin(tmp_path, "cli-after")
    blocked = tmp_path / "results" / "digits" / "records" / "random"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the model's folder goes")
    assert main(["--plugin", plugin] + tiny_run(models="random,cli-after")) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert any(line.startswith("repeval: error: random:") and str(blocked) in line
               and "(in the results folder" in line for line in err), err
    assert len(list((tmp_path / "results/digits/records/cli-after").rglob("*.json"))) == 1
