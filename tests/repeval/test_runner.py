"""The runner (repeval/engine/runner.py): records written once and reused, caches, resumption, determinism,
failures as records, and what a record's identity covers: everything that can change its number,
nothing else.

Each record-identity test failed on the code before record identity was introduced (stale numbers were
kept after weights, architecture, plugin code, family settings or versions changed)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import repeval.engine.runner as runner
from repeval.cli import main
from repeval.estimators.nets import SharedEncoder
from repeval.engine.presets import PRESETS
from repeval.plugin.protocol import ProtocolFailure
from repeval.registry import MODELS, PROTOCOLS
from repeval.store.storage import atomic_torch_save, load_checkpoint
from tests.helpers import read_records


def _metrics(results: Path) -> dict[str, dict]:
    return {k: r["metrics"] for k, r in read_records(results).items()}


def _counts(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.fixture
def fresh_registry():
    saved = dict(MODELS._items)
    yield
    MODELS._items.clear()
    MODELS._items.update(saved)


def test_cli_run_writes_records_then_rerun_computes_nothing(tmp_path, tiny_run, monkeypatch, capsys):
    assert main(tiny_run()) == 0
    recs = read_records(tmp_path / "results")
    assert sorted(recs) == [f"digits/records/ae/mlp/{t}-seed0-epoch1.json" for t in ("conv", "fc", "y")]
    r = recs["digits/records/ae/mlp/conv-seed0-epoch1.json"]
    assert r["success"] and 0 <= r["metrics"]["accuracy"] <= 100
    assert r["epoch"] == 1 and r["config"]["protocol_config"]["epochs"] == 2 and r["history"][0]["mse"] > 0
    assert r["provenance"]["versions"]["torch"] and r["config_hash"] and r["encoder_hash"]

    def forbidden(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr(runner, "train", forbidden)
    monkeypatch.setattr(runner, "extract", forbidden)
    assert main(tiny_run()) == 0
    assert read_records(tmp_path / "results") == recs
    assert "0 records written, 3 already present" in capsys.readouterr().err


def test_resume_between_records_uses_caches(tmp_path, tiny_run, monkeypatch):
    assert main(tiny_run()) == 0
    before = _metrics(tmp_path / "results")
    os.remove(tmp_path / "results/digits/records/ae/mlp/fc-seed0-epoch1.json")

    def forbidden(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr(runner, "extract", forbidden)  # features come from the cache
    assert main(tiny_run()) == 0                        # training resumes at its last epoch: no steps
    assert _metrics(tmp_path / "results") == before


def test_changed_config_is_kept_until_rerun_asks_for_it(tmp_path, tiny_run, capsys):
    assert main(tiny_run()) == 0
    a = _metrics(tmp_path / "results")
    capsys.readouterr()
    assert main(tiny_run("--set", "mlp.epochs=3")) == 1       # another configuration: reported, not overwritten
    assert "--rerun ae/mlp replaces them" in capsys.readouterr().err and _metrics(tmp_path / "results") == a
    assert main(tiny_run("--set", "mlp.epochs=3", "--rerun", "ae/mlp")) == 0
    b = _metrics(tmp_path / "results")
    assert a.keys() == b.keys() and a != b


def test_same_seed_same_numbers(tmp_path, tiny_run):
    args = tiny_run()
    assert main(args) == 0
    first = _metrics(tmp_path / "results")
    other = [a.replace(str(tmp_path), str(tmp_path / "again")) for a in args]
    assert main(other) == 0
    assert _metrics(tmp_path / "again" / "results") == first


def test_runner_calls_the_epoch_callback_with_mean_losses(tmp_path):
    from repeval.data import Dataset
    from repeval.engine.runner import RunOptions, run

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 3, 32, 32, generator=g) * 2 - 1, torch.arange(96) % 4
    ds = Dataset("tiny", x[:64], y[:64], x[64:], y[64:], 4)
    seen = []
    opts = RunOptions(models=["ae"], protocols=["mlp"], preset=PRESETS.get("quick"), quiet=True,
                      overrides={"train": {"epochs": 2, "batch_size": 32}, "mlp": {"epochs": 1}},
                      workdir=tmp_path / "work", results=tmp_path / "results",
                      on_epoch=lambda model, epoch, losses: seen.append((model, epoch, dict(losses))))
    run(opts, ds)
    assert [(m, e) for m, e, _ in seen] == [("ae", 1), ("ae", 2)]
    record = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert [losses for _, _, losses in seen] == record["history"] and record["history"][0]   # the same means


def test_dry_run_computes_nothing_and_says_what_is_present(tmp_path, tiny_run, capsys, monkeypatch):
    assert main(tiny_run(models="random")) == 0
    capsys.readouterr()

    def forbidden(*a, **k):
        raise AssertionError("computed during --dry-run")
    monkeypatch.setattr("repeval.engine.runner.train", forbidden)
    monkeypatch.setattr("repeval.engine.runner.extract", forbidden)
    before = read_records(tmp_path / "results")
    assert main(tiny_run(models="random,ae", protocols="mlp,ndm") + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[random] 3 records present, 1 to compute" in out and "epoch 0: extract 3 taps, evaluate 1 records (ndm)" in out
    assert "[ae] 0 records present, 4 to compute" in out and "train to epoch 1 (checkpoint" in out
    assert read_records(tmp_path / "results") == before and not (tmp_path / "work/models").exists()


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
    recs = read_records(tmp_path / "ref/results")
    mlp = sorted(k for k in recs if "/mlp/" in k)
    assert [k.split("-epoch")[1] for k in mlp] == ["1.json", "2.json", "3.json"] * 3
    assert sorted(k for k in recs if "/ndm/" in k) == ["digits/records/ae/ndm/y-seed0-epoch3.json"]  # last only
    assert [len(recs[k]["history"]) for k in mlp[:3]] == [1, 2, 3]
    # the same curve in two stretches: stop after epoch 1, then resume
    part = [a.replace(str(tmp_path), str(tmp_path / "part")) for a in tiny_run(*curve, protocols="mlp,ndm")]
    assert main(part + ["--set", "ndm.steps=2", "--set", "train.epochs=1", "--set", "train.eval_epochs=1"]) == 0
    assert main(part + ["--set", "ndm.steps=2"]) == 0
    strip = lambda rs: {k: (r["metrics"], r["config_hash"], r["encoder_hash"], r["history"]) for k, r in rs.items()}
    part_recs = strip(read_records(tmp_path / "part/results"))
    assert {k: part_recs[k] for k in recs} == strip(recs)     # (+ the first stretch's own last-epoch ndm)


DIVERGE = '''
import torch
from repeval import Family, register_model

@register_model("nanfam", "NaN family")
class NaNFamily(Family):
    def train_step(self, x, labels, index, opt):
        return {"loss": torch.tensor(float("inf"))}
'''


def test_diverging_model_is_reported_and_run_continues(tmp_path, tiny_run, capsys):
    plugin = tmp_path / "nanplug.py"
    plugin.write_text(DIVERGE)
    try:
        assert main(["--plugin", str(plugin)] + tiny_run(models="nanfam,random")) == 1
    finally:
        MODELS.unregister("nanfam")
    err = capsys.readouterr().err
    assert "nanfam: training diverged: non-finite loss 'loss' = inf" in err
    assert len(list((tmp_path / "results/digits/records/random").rglob("*.json"))) == 3


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


# ------------------------------------------------------------------------------------- record identity

def test_swapped_pretrained_weights_are_recomputed(tmp_path, tiny_run, capsys, fresh_registry):
    torch.manual_seed(1)
    torch.save(SharedEncoder().state_dict(), tmp_path / "enc.pt")
    args = ["--pretrained", f"mine={tmp_path / 'enc.pt'}"] + tiny_run(models="mine")
    assert main(args) == 0
    first = read_records(tmp_path / "results")
    MODELS.unregister("mine")
    assert main(args) == 0 and "0 records written, 3 already present" in _counts(capsys)
    MODELS.unregister("mine")
    torch.manual_seed(2)
    torch.save(SharedEncoder().state_dict(), tmp_path / "enc.pt")      # same path, other weights
    assert main(args) == 1 and "0 records written, 0 already present" in _counts(capsys)   # detected, kept
    MODELS.unregister("mine")
    assert main(args + ["--rerun", "mine"]) == 0 and "3 records written, 0 already present" in _counts(capsys)
    second = read_records(tmp_path / "results")
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
    changed = "hold another configuration"       # detected: kept and reported until --rerun plug
    for i, (width, extra, expect) in enumerate([(8, "", "1 records written"), (8, "", "0 records written"),
                                                (8, " * 2", changed),   # same weights, new forward
                                                (16, " * 2", changed)]):  # new architecture
        plugin.write_text(PLUGIN.format(width=width, extra=extra))
        MODELS._items.pop("plug", None)
        for k in [k for k in sys.modules if k.startswith("repeval_plugin_plug")]:
            del sys.modules[k]
        assert main(["--plugin", str(plugin)] + tiny_run(models="plug")) == (1 if expect == changed else 0)
        assert expect in capsys.readouterr().err, i


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
        assert main(["--plugin", str(plugin)] + tiny_run(models="myfam") + ["--rerun", "myfam"]) == 0
        dirs.append(sorted(p.name for p in (tmp_path / "work/models/digits").iterdir()))
    assert len(dirs[0]) == 1 and len(dirs[1]) == 2          # a second checkpoint, not the old train.pt


def test_family_settings_are_config_and_hashed_per_family(tmp_path, tiny_run, capsys):
    args = tiny_run(models="ae,dim-l-infonce") + ["--set", "dim.critic_units=16"]
    assert main(args) == 0
    recs = read_records(tmp_path / "results")
    dim = next(r for k, r in recs.items() if "/dim-l-infonce/" in k)
    assert dim["config"]["encoder"]["config"] == {"estimator": "infonce", "alpha": 0.0, "beta": 1.0,
                                                  "gamma": 0.1, "gp_weight": 1.0, "critic_units": 16}
    ae_dirs = sorted((tmp_path / "work/models/digits").glob("ae-*"))
    args[args.index("dim.critic_units=16")] = "dim.critic_units=24"
    assert main(args + ["--rerun", "dim-l-infonce"]) == 0 and "3 records written, 3 already present" in _counts(capsys)
    assert sorted((tmp_path / "work/models/digits").glob("ae-*")) == ae_dirs
    assert main(tiny_run(models="dim-g") + ["--set", "dim.gamma=0", "--set", "dim.critic_units=16"]) == 0
    rec = next(r for k, r in read_records(tmp_path / "results").items() if "/dim-g/" in k)
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
    assert main(args) == 1 and "3 successful record(s)" in capsys.readouterr().err   # family version bumped
    assert main(args + ["--rerun", "random"]) == 0 and "3 records written" in _counts(capsys)
    mlp = PROTOCOLS.get("mlp")
    monkeypatch.setitem(PROTOCOLS._items, "mlp", type(mlp)(**{**vars(mlp), "version": mlp.version + 1}))
    assert main(args) == 1 and "3 successful record(s)" in capsys.readouterr().err   # protocol version bumped


# ---------------------------------------------------------------------------------------- a killed run

@pytest.mark.slow
def test_kill9_mid_run_resumes_to_identical_numbers(tmp_path):
    """A run SIGKILLed after its first checkpoint resumes and ends with the same numbers."""
    def cmd(root):
        return [sys.executable, "-m", "repeval", "run", "--models", "ae", "--protocols", "mlp", "--quiet",
                "--no-table", "--workdir", str(root / "w"), "--results", str(root / "r"),
                "--set", "train.epochs=3", "--set", "train.max_train=768", "--set", "mlp.epochs=1"]
    ref = tmp_path / "ref"
    subprocess.run(cmd(ref), check=True, capture_output=True, timeout=300)

    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd(run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    ckpts = run / "w" / "models"
    while time.time() < deadline and not list(ckpts.rglob("train.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(ckpts.rglob("train.pt")), "no checkpoint appeared before the deadline"
    epoch_at_kill = torch.load(next(ckpts.rglob("train.pt")), weights_only=True)["payload"]["epoch"]
    assert epoch_at_kill < 3
    subprocess.run(cmd(run), check=True, capture_output=True, timeout=300)
    assert _metrics(run / "r") == _metrics(ref / "r")


# -------------------------------------------------------------------------------- failures are records

# last in the module: one_thread (module scope) stays in force from its first use to the module's end
@pytest.mark.usefixtures("one_thread")
def test_failing_protocol_writes_record_and_run_continues(tmp_path):
    from dataclasses import dataclass

    from repeval.data import load_dataset
    from repeval.engine.presets import PRESETS
    from repeval.plugin.protocol import register_protocol
    from repeval.registry import PROTOCOLS
    from repeval.engine.runner import RunOptions, run

    @dataclass(frozen=True)
    class BoomConfig:
        lr: float = 1.0

    def boom(inp, cfg, *, seed, device):
        raise ProtocolFailure(f"diverged at lr={cfg.lr}")

    register_protocol("test_boom", BoomConfig, taps="code")(boom)
    try:
        opts = RunOptions(models=["random"], protocols=["test_boom", "svm"], preset=PRESETS.get("quick"),
                          overrides={"train": {"epochs": "0"}, "test_boom": {"lr": "1e9"},
                                     "svm": {"epochs": "1", "min_steps": "20", "c_grid": "0.1"}},
                          seeds=1, workdir=tmp_path / "w", results=tmp_path / "r", quiet=True)
        summary = run(opts, load_dataset("digits"))
    finally:
        PROTOCOLS.unregister("test_boom")
    recs = {p.parent.name + "/" + p.name: json.loads(p.read_text()) for p in (tmp_path / "r").rglob("*.json")}
    bad = recs["test_boom/y-seed0-epoch0.json"]
    assert bad["success"] is False and "ProtocolFailure" in bad["error"] and "lr=1000000000.0" in bad["error"]
    assert bad["metrics"] == {}
    good = [recs[f"svm/{t}-seed0-epoch0.json"] for t in ("conv", "fc", "y")]
    assert all(r["success"] and r["metrics"]["accuracy"] > 20 for r in good)
    assert len(summary.failures) == 1


def test_batched_protocol_one_call_per_tap_and_resume(tmp_path):
    """A protocol registered with ``batch`` gets all the seeds it owes for a (tap, epoch) in one call;
    a failure fails every seed of the call; a resumed run asks only for what is missing and writes the
    same numbers."""
    from dataclasses import dataclass

    from repeval.data import load_dataset
    from repeval.engine.presets import PRESETS
    from repeval.engine.runner import RunOptions, run
    from repeval.plugin.protocol import register_protocol
    from repeval.registry import PROTOCOLS

    @dataclass(frozen=True)
    class SeedsConfig:
        fail: bool = False

    calls = []

    def per_seed(inp, seed):
        return {"value": float(inp.train.features[:, 0].sum()) + seed}

    def one(inp, cfg, *, seed, device):
        return per_seed(inp, seed)

    def many(inp, cfg, *, seeds, device):
        calls.append((inp.tap, seeds))
        if cfg.fail:
            raise ProtocolFailure("boom")
        return [per_seed(inp, s) for s in seeds]

    register_protocol("test_seeds", SeedsConfig, taps="all", seeds=3, batch=many)(one)
    try:
        def go(fail="false", results="r"):
            opts = RunOptions(models=["random"], protocols=["test_seeds"], preset=PRESETS.get("quick"),
                              overrides={"train": {"epochs": "0"}, "test_seeds": {"fail": fail}}, workdir=tmp_path / "w",
                              results=tmp_path / results, quiet=True)
            return run(opts, load_dataset("digits"))
        go()
        assert sorted(calls) == [(t, (0, 1, 2)) for t in ("conv", "fc", "y")]
        recs = read_records(tmp_path / "r")
        first = {k: v["metrics"] for k, v in recs.items()}
        assert len(first) == 9 and all(v["timing_s"]["batched_seeds"] == 3 for v in recs.values())
        victim = next(p for p in (tmp_path / "r").rglob("fc-seed1-epoch0.json"))
        victim.unlink()
        calls.clear()
        go()
        assert calls == [("fc", (1,))]
        assert {k: v["metrics"] for k, v in read_records(tmp_path / "r").items()} == first
        calls.clear()
        summary = go(fail="true", results="r2")
        assert sorted(calls) == [(t, (0, 1, 2)) for t in ("conv", "fc", "y")]
        assert len(summary.failures) == 9
    finally:
        PROTOCOLS.unregister("test_seeds")
