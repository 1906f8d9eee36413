import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import repeval.runner as runner
from repeval.cli import main
from repeval.nets import SharedEncoder
from repeval.registry import MODELS


def _records(results: Path) -> dict[str, dict]:
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in sorted(results.rglob("*.json"))}


def _metrics(results: Path) -> dict[str, dict]:
    return {k: r["metrics"] for k, r in _records(results).items()}


def test_cli_run_writes_records_then_rerun_computes_nothing(tmp_path, tiny_run, monkeypatch, capsys):
    assert main(tiny_run()) == 0
    recs = _records(tmp_path / "results")
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
    assert _records(tmp_path / "results") == recs
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


def test_changed_config_is_recomputed(tmp_path, tiny_run):
    assert main(tiny_run()) == 0
    a = _metrics(tmp_path / "results")
    assert main(tiny_run("--set", "mlp.epochs=3")) == 0
    b = _metrics(tmp_path / "results")
    assert a.keys() == b.keys() and a != b


def test_same_seed_same_numbers(tmp_path, tiny_run):
    args = tiny_run()
    assert main(args) == 0
    first = _metrics(tmp_path / "results")
    other = [a.replace(str(tmp_path), str(tmp_path / "again")) for a in args]
    assert main(other) == 0
    assert _metrics(tmp_path / "again" / "results") == first


PLUGIN = '''
from collections import OrderedDict
import torch
from torch import nn
from repeval import register_encoder

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.lin = nn.Linear(4 * 16 * 16, 8)
    def forward(self, x):
        h = torch.relu(self.conv(x))
        return OrderedDict(pixels=h, code=self.lin(h.flatten(1)))

class Broken(nn.Module):
    def forward(self, x):
        return OrderedDict(bad=torch.zeros(3, 5))

register_encoder("tiny-{tag}", Tiny, display="Tiny user encoder")
register_encoder("broken-{tag}", Broken)
'''


def test_plugin_encoder_with_own_taps(tmp_path, tiny_run, capsys):
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLUGIN.format(tag="a"))
    assert main(["--plugin", str(plugin)] + tiny_run(models="tiny-a")) == 0
    recs = _records(tmp_path / "results")
    assert sorted(recs) == [f"digits/records/tiny-a/mlp/{t}-seed0-epoch0.json" for t in ("code", "pixels")]
    assert all(r["display"] == "Tiny user encoder" and r["config"]["encoder"]["kind"] == "frozen"
               and r["config"]["encoder"]["code"] for r in recs.values())
    assert main(["--plugin", str(plugin), "list"]) == 0
    assert "tiny-a" in capsys.readouterr().out


def test_plugin_encoder_with_wrong_shapes_one_line_error(tmp_path, tiny_run, capsys):
    plugin = tmp_path / "plug_b.py"
    plugin.write_text(PLUGIN.format(tag="b"))
    assert main(["--plugin", str(plugin)] + tiny_run(models="broken-b")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "encoder 'broken-b' tap 'bad' has shape (3, 5)" in err


def test_missing_plugin_file(tmp_path, capsys):
    assert main(["--plugin", str(tmp_path / "nope.py"), "list"]) == 2
    assert "plugin file not found" in capsys.readouterr().err


def test_pretrained_checkpoint(tmp_path, tiny_run, capsys):
    torch.manual_seed(123)
    enc = SharedEncoder()
    torch.save(enc.state_dict(), tmp_path / "enc.pt")
    try:
        assert main(["--pretrained", f"mine={tmp_path / 'enc.pt'}"] + tiny_run(models="mine")) == 0
        rec = _records(tmp_path / "results")["digits/records/mine/mlp/y-seed0-epoch0.json"]
        from repeval.storage import state_dict_hash
        assert rec["encoder_hash"] == state_dict_hash(enc.state_dict())
    finally:
        MODELS.unregister("mine")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    capsys.readouterr()
    try:
        assert main(["--pretrained", f"bad={tmp_path / 'bad.pt'}"] + tiny_run(models="bad,random")) == 1
    finally:
        MODELS.unregister("bad")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot load checkpoint" in err[0] and "bad.pt" in err[0]
    assert "3 records written" in err[1]    # one bad checkpoint does not stop the other models
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    try:
        assert main(["--pretrained", f"wrong={tmp_path / 'wrong.pt'}"] + tiny_run(models="wrong")) == 1
    finally:
        MODELS.unregister("wrong")
    assert "does not fit SharedEncoder" in capsys.readouterr().err


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
