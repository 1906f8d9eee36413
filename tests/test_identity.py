"""What a record is: its identity covers everything that can change its number, nothing else.

Each test here failed on the code before record identity was introduced (stale numbers were kept
after weights, architecture, plugin code, family settings or versions changed)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import repeval.storage as storage
from repeval import tables
from repeval.cli import main
from repeval.nets import SharedEncoder
from repeval.registry import MODELS, PROTOCOLS
from repeval.storage import load_checkpoint, atomic_torch_save


def _records(results: Path) -> dict[str, dict]:
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}


def _counts(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def fresh_registry():
    saved = dict(MODELS._items)
    yield
    MODELS._items.clear()
    MODELS._items.update(saved)


def test_swapped_pretrained_weights_are_recomputed(tmp_path, tiny_run, capsys, fresh_registry):
    torch.manual_seed(1)
    torch.save(SharedEncoder().state_dict(), tmp_path / "enc.pt")
    args = ["--pretrained", f"mine={tmp_path / 'enc.pt'}"] + tiny_run(models="mine")
    assert main(args) == 0
    first = _records(tmp_path / "results")
    MODELS.unregister("mine")
    assert main(args) == 0 and "0 records written, 3 already present" in _counts(capsys)
    MODELS.unregister("mine")
    torch.manual_seed(2)
    torch.save(SharedEncoder().state_dict(), tmp_path / "enc.pt")      # same path, other weights
    assert main(args) == 0 and "3 records written, 0 already present" in _counts(capsys)
    second = _records(tmp_path / "results")
    assert {k: r["encoder_hash"] for k, r in first.items()} != {k: r["encoder_hash"] for k, r in second.items()}


PLUGIN = '''
from collections import OrderedDict
import torch
from torch import nn
from repeval import register_encoder

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, {width})
    def forward(self, x):
        return OrderedDict(code=torch.tanh(self.lin(x.flatten(1))){extra})

register_encoder("plug", Tiny)
'''


def test_changed_plugin_code_is_recomputed(tmp_path, tiny_run, capsys, fresh_registry):
    plugin = tmp_path / "plug.py"
    for i, (width, extra, expect) in enumerate([(8, "", "1 records written"), (8, "", "0 records written"),
                                                (8, " * 2", "1 records written"),   # same weights, new forward
                                                (16, " * 2", "1 records written")]):  # new architecture
        plugin.write_text(PLUGIN.format(width=width, extra=extra))
        MODELS._items.pop("plug", None)
        for k in [k for k in sys.modules if k.startswith("repeval_plugin_plug")]:
            del sys.modules[k]
        assert main(["--plugin", str(plugin)] + tiny_run(models="plug")) == 0
        assert expect in _counts(capsys), i


FAMILY = '''
import torch
from repeval import Family, register_model

@register_model("myfam", "My family")
class MyFam(Family):
    def train_step(self, x, labels, index, opt):
        loss = self.encoder(x)["y"].pow(2).mean() * {scale}
        self.update(opt["model"], loss)
        return {{"loss": loss.detach()}}
'''


def test_trainable_plugin_family_retrains_when_its_code_changes(tmp_path, tiny_run, fresh_registry):
    plugin = tmp_path / "fam.py"
    dirs = []
    for scale in (1.0, 3.0):
        plugin.write_text(FAMILY.format(scale=scale))
        MODELS._items.pop("myfam", None)
        for k in [k for k in sys.modules if k.startswith("repeval_plugin_fam")]:
            del sys.modules[k]
        assert main(["--plugin", str(plugin)] + tiny_run(models="myfam")) == 0
        dirs.append(sorted(p.name for p in (tmp_path / "work/models/digits").iterdir()))
    assert len(dirs[0]) == 1 and len(dirs[1]) == 2          # a second checkpoint, not the old train.pt


def test_family_settings_are_config_and_hashed_per_family(tmp_path, tiny_run, capsys):
    args = tiny_run(models="ae,dim-l-infonce") + ["--set", "dim.critic_units=16"]
    assert main(args) == 0
    recs = _records(tmp_path / "results")
    dim = next(r for k, r in recs.items() if "/dim-l-infonce/" in k)
    assert dim["config"]["encoder"]["config"] == {"estimator": "infonce", "alpha": 0.0, "beta": 1.0,
                                                  "gamma": 0.1, "gp_weight": 1.0, "critic_units": 16}
    ae_dirs = sorted((tmp_path / "work/models/digits").glob("ae-*"))
    args[args.index("dim.critic_units=16")] = "dim.critic_units=24"
    assert main(args) == 0 and "3 records written, 3 already present" in _counts(capsys)
    assert sorted((tmp_path / "work/models/digits").glob("ae-*")) == ae_dirs
    assert main(tiny_run(models="dim-g") + ["--set", "dim.gamma=0", "--set", "dim.critic_units=16"]) == 0
    rec = next(r for k, r in _records(tmp_path / "results").items() if "/dim-g/" in k)
    assert rec["config"]["encoder"]["config"]["gamma"] == 0.0


def test_versions_enter_the_identity_and_prose_does_not(tmp_path, tiny_run, capsys, monkeypatch):
    args = tiny_run(models="random")
    assert main(args) == 0
    spec = MODELS.get("random")
    monkeypatch.setitem(MODELS._items, "random", type(spec)(spec.name, "Renamed row", spec.build,
                                                            spec.source, spec.section, spec.code))
    assert main(args) == 0 and "0 records written" in _counts(capsys)       # display text: no effect
    fam_cls = spec.build.family
    monkeypatch.setattr(fam_cls, "version", fam_cls.version + 1)
    assert main(args) == 0 and "3 records written" in _counts(capsys)       # family version bumped
    mlp = PROTOCOLS.get("mlp")
    monkeypatch.setitem(PROTOCOLS._items, "mlp", type(mlp)(**{**vars(mlp), "version": mlp.version + 1}))
    assert main(args) == 0 and "3 records written" in _counts(capsys)       # protocol version bumped


def test_force_and_rerun(tmp_path, tiny_run, capsys, monkeypatch):
    args = tiny_run(models="random", protocols="mlp,ndm") + ["--set", "ndm.steps=2"]
    assert main(args) == 0
    _counts(capsys)
    assert main(args + ["--rerun", "random/ndm"]) == 0 and "1 records written, 3 already present" in _counts(capsys)
    assert main(args + ["--rerun", "random"]) == 0 and "4 records written, 0 already present" in _counts(capsys)
    assert main(args + ["--force"]) == 0 and "4 records written" in _counts(capsys)
    assert main(args) == 0 and "0 records written, 4 already present" in _counts(capsys)


def test_eval_epochs_give_a_record_per_epoch_and_resume_identically(tmp_path, tiny_run):
    curve = ["--set", "train.epochs=3", "--set", "train.eval_epochs=1,2"]
    ref = [a.replace(str(tmp_path), str(tmp_path / "ref")) for a in tiny_run(*curve, protocols="mlp,ndm")]
    assert main(ref + ["--set", "ndm.steps=2"]) == 0
    recs = _records(tmp_path / "ref/results")
    mlp = sorted(k for k in recs if "/mlp/" in k)
    assert [k.split("-epoch")[1] for k in mlp] == ["1.json", "2.json", "3.json"] * 3
    assert sorted(k for k in recs if "/ndm/" in k) == ["digits/records/ae/ndm/y-seed0-epoch3.json"]  # last only
    assert [len(recs[k]["history"]) for k in mlp[:3]] == [1, 2, 3]
    # the same curve in two stretches: stop after epoch 1, then resume
    part = [a.replace(str(tmp_path), str(tmp_path / "part")) for a in tiny_run(*curve, protocols="mlp,ndm")]
    assert main(part + ["--set", "ndm.steps=2", "--set", "train.epochs=1", "--set", "train.eval_epochs=1"]) == 0
    assert main(part + ["--set", "ndm.steps=2"]) == 0
    strip = lambda rs: {k: (r["metrics"], r["config_hash"], r["encoder_hash"], r["history"]) for k, r in rs.items()}
    part_recs = strip(_records(tmp_path / "part/results"))
    assert {k: part_recs[k] for k in recs} == strip(recs)     # (+ the first stretch's own last-epoch ndm)


def test_altered_feature_cache_is_recomputed(tmp_path, tiny_run, capsys):
    args = tiny_run(models="random")
    assert main(args) == 0
    before = {k: r["metrics"] for k, r in _records(tmp_path / "results").items()}
    entry = next((tmp_path / "work/features").glob("*-train.pt"))
    obj = load_checkpoint(entry)
    obj["payload"]["conv"] = obj["payload"]["conv"] * 0.1          # still loads, but altered
    atomic_torch_save(entry, obj)
    assert main(args + ["--force"]) == 0
    after = _records(tmp_path / "results")
    assert {k: r["metrics"] for k, r in after.items()} == before
    assert not any(r["timing_s"]["features_cached"] for r in after.values())


def test_altered_checkpoint_is_one_line_and_other_models_go_on(tmp_path, tiny_run, capsys):
    args = tiny_run(models="ae", protocols="mlp") + ["--set", "train.epochs=2"]
    assert main(args + ["--set", "train.epochs=1"]) == 0           # leaves train.pt at epoch 1
    ckpt = next((tmp_path / "work/models/digits").glob("ae-*/train.pt"))
    obj = load_checkpoint(ckpt)
    k = next(iter(obj["payload"]["family"]))
    obj["payload"]["family"][k] += 1.0
    atomic_torch_save(ckpt, obj)
    capsys.readouterr()
    rc = main(tiny_run(models="ae,random") + ["--set", "train.epochs=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 2, err
    assert str(ckpt) in err[0] and "checksum" in err[0]
    assert "3 records written" in err[1]                            # random still ran


@pytest.mark.parametrize("content", ["null", "[]", '{"schema": 2, "model": 3}', "EDIT"])
def test_invalid_records_are_reported_and_recomputed(tmp_path, tiny_run, capsys, content):
    args = tiny_run(models="random")
    assert main(args) == 0
    path = tmp_path / "results/digits/records/random/mlp/y-seed0-epoch0.json"
    good = path.read_text()
    if content == "EDIT":
        rec = json.loads(good)
        rec["metrics"]["accuracy"] = 129.44
        content = json.dumps(rec)
    path.write_text(content)
    recs, problems = tables.load_records(tmp_path / "results", "digits")      # the tables ignore it
    assert len(recs) == 2 and len(problems) == 1 and str(path) in problems[0]
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "invalid record" in err and "1 records written, 2 already present" in err
    assert json.loads(path.read_text())["metrics"] == json.loads(good)["metrics"]


def test_files_are_written_with_the_umask_mode(tmp_path, tiny_run):
    code = ("import os, sys; os.umask(0o002); from repeval.cli import main; "
            f"sys.exit(main({tiny_run(models='random')!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=600)
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "results").rglob("*.json")}
    modes |= {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "work").rglob("*.pt")}
    assert modes == {"0o664"}


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


def test_dry_run_computes_nothing_and_says_what_is_present(tmp_path, tiny_run, capsys, monkeypatch):
    assert main(tiny_run(models="random")) == 0
    capsys.readouterr()

    def forbidden(*a, **k):
        raise AssertionError("computed during --dry-run")
    monkeypatch.setattr("repeval.runner.train", forbidden)
    monkeypatch.setattr("repeval.runner.extract", forbidden)
    before = _records(tmp_path / "results")
    assert main(tiny_run(models="random,ae", protocols="mlp,ndm") + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[random] 3 records present, 1 to compute" in out and "epoch 0: extract 3 taps, evaluate 1 records (ndm)" in out
    assert "[ae] 0 records present, 4 to compute" in out and "train to epoch 1 (checkpoint" in out
    assert _records(tmp_path / "results") == before and not (tmp_path / "work/models").exists()
