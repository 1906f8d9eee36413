"""repeval validate end to end: a tiny run of every built-in check (files, provenance, PASS lines,
rebuild from stored rows), non-zero exit on failure, strict config, and a new check as one new file."""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap

import pytest

from repeval.config import ConfigError
from repeval.plugins import load_plugin
from repeval.registry import RegistryError
from repeval.validation import (CHECKS, Check, check_names, cmd_validate, full_config, quick_config,
                                rebuild_reports, register_check, run_validation)
from repeval.validation import groundtruth as gt

pytestmark = pytest.mark.usefixtures("one_thread")

BUILTIN = ("gaussian", "invariance", "ndm", "ssim", "student_t")


def _tiny(**kw):
    base = dict(mine=dict(steps=150, hidden=64, x_features=32, batch_size=128),
                gaussian=dict(n_samples=2000, dims=(2,), rhos=(0.0, 0.8), bound_steps=150, bound_hidden=64,
                              bound_embed=16),
                invariance=dict(n_samples=2000, sigmas=(0.5,), maps=("identity", "linear")),
                ndm=dict(dim=8, tcs=(0.0, 0.5), n_samples=1000, steps=60, batch_size=256),
                ssim=dict(images=4, noise_levels=(0.0, 0.1, 0.3), blur_levels=(0.0, 1.0, 2.0)),
                student_t=dict(n_samples=1000))
    for k, v in kw.items():
        base[k] = {**base[k], **v} if isinstance(base.get(k), dict) else v
    return quick_config(**base)


def test_tiny_validation_run_writes_everything(tmp_path):
    cfg = _tiny()
    s = run_validation(cfg, tmp_path, mode="test", quiet=True)
    for name in ("gaussian.csv", "gaussian.md", "gaussian_d2.png", "gaussian_bias.csv", "invariance.csv",
                 "invariance.png", "ndm.csv", "ndm.png", "ssim.csv", "ssim.md", "ssim.png", "student_t.csv",
                 "student_t.md", "student_t.png", "summary.md", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    js = json.loads((tmp_path / "summary.json").read_text())
    assert js["config_hash"] == s["config_hash"] and js["provenance"]["versions"]["torch"]
    assert js["config"]["settings"]["gaussian"]["rhos"] == [0.0, 0.8]
    assert js["config"]["settings"]["ssim"]["images"] == 4 and js["config"]["mine"]["steps"] == 150
    assert list(js["checks"]) == list(BUILTIN)
    assert all(js["checks"][c]["wall_s"] >= 0 for c in js["checks"])
    assert js["checks"]["ssim"]["passed"], js["checks"]["ssim"]["lines"]
    g = {v["name"]: v["passed"] for v in js["checks"]["gaussian"]["verdicts"]}
    # cheap, robust properties: lower bounds do not overestimate; infoNCE stays below log K
    assert g["mine_no_overestimate"] and g["dv_no_overestimate"] and g["infonce_ceiling"]
    n = {v["name"]: v["passed"] for v in js["checks"]["ndm"]["verdicts"]}
    assert n["zero_at_independence"] and n["monotone"]
    rows = js["checks"]["gaussian"]["rows"]
    assert all(r["infonce"] <= math.log(cfg.of("gaussian").bound_batch_size) + 1e-6 for r in rows)
    assert [r["true_mi"] for r in rows] == pytest.approx([0.0, gt.gaussian_mi(0.8, 2)])
    t = js["checks"]["student_t"]
    assert [r["true_mi"] for r in t["rows"]] == pytest.approx([gt.student_t_mi(0.0, 5, 2.0)])
    assert all(math.isfinite(r["mine"]) for r in t["rows"]) and len(t["verdicts"]) == 1
    assert "PASS  ssim/ssim_identity" in (tmp_path / "summary.md").read_text()
    # reports can be rebuilt from the stored rows alone, with the same verdicts
    (tmp_path / "ndm.png").unlink()
    r = rebuild_reports(tmp_path)
    assert (tmp_path / "ndm.png").exists() and "rebuilt" in r
    assert {k: c["lines"] for k, c in r["checks"].items()} == {k: c["lines"] for k, c in js["checks"].items()}


def test_failed_check_gives_nonzero_exit(tmp_path, capsys):
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path, quiet=True)
    assert cmd_validate(args, config=_tiny(checks=("ssim",))) == 0
    bad = _tiny(checks=("ssim",), ssim={"noise_levels": (0.0, 0.2, 0.1)})  # not an increasing grid: must FAIL
    assert cmd_validate(args, config=bad) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "ssim_noise_monotone" in out
    assert (tmp_path / "quick" / "summary.json").exists()


def test_config_is_strict_and_budgets_come_from_the_checks():
    assert full_config().checks[:len(BUILTIN)] == BUILTIN
    q, f = quick_config(), full_config()
    assert q.of("ndm").steps == 200 and f.of("ndm").steps == 800 and q.mine.steps == 400 and f.mine.steps == 2000
    assert quick_config(ndm={"steps": 7}).of("ndm").steps == 7
    with pytest.raises(ConfigError, match="bogus"):
        quick_config(bogus={})
    with pytest.raises(ConfigError, match="validate.ssim.bogus"):
        quick_config(ssim={"bogus": 1})
    with pytest.raises(ConfigError, match="one entry per task"):
        quick_config(student_t={"dims": (1, 2)})
    with pytest.raises(RegistryError, match="unknown check 'nope'"):
        quick_config(checks=("nope",))


NEW_CHECK = '''
from dataclasses import dataclass

import torch

from repeval.figures import plt, save_png
from repeval.seeding import generator
from repeval.validation import Check, Verdict, register_check


@dataclass(frozen=True)
class CoinSettings:
    n: int = 4000
    tol: float = 0.05


@register_check("coin", order=99)
class Coin(Check):
    """The mean of fair coin flips is 1/2."""
    Settings = CoinSettings
    quick = {"n": 1000}
    columns = {"n": "flips", "mean": "fraction of heads", "truth": "1/2"}

    def measure(self, cfg, s, device, log):
        flips = torch.randint(0, 2, (s.n,), generator=generator(cfg.seed)).float()
        return [{"n": s.n, "mean": float(flips.mean()), "truth": 0.5}], {}

    def judge(self, cfg, s, rows, info):
        err = abs(rows[0]["mean"] - 0.5)
        return [Verdict("coin", "mean", err <= s.tol, f"|mean - 1/2| <= {s.tol}", f"error {err:.4f}")], ["fair coin"]

    def plot(self, res, out):
        fig, ax = plt.subplots()
        ax.bar([0], [res.rows[0]["mean"]])
        return [save_png(fig, out / "coin.png")]
'''


@pytest.fixture
def coin_check(tmp_path):
    """A new check written as one file and loaded the way `repeval --plugin FILE validate` loads it."""
    path = tmp_path / "coin_check.py"
    path.write_text(textwrap.dedent(NEW_CHECK))
    before = set(sys.modules)
    load_plugin(path)
    yield path
    CHECKS.unregister("coin")
    for m in set(sys.modules) - before:
        del sys.modules[m]


def test_a_new_check_is_one_new_file(coin_check, tmp_path, capsys):
    assert check_names()[-1] == "coin"                          # `repeval validate` would run it last
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path / "out", quiet=True)
    assert cmd_validate(args, config=quick_config(checks=("coin",))) == 0
    out = tmp_path / "out" / "quick"
    assert "PASS  coin" in capsys.readouterr().out
    for name in ("coin.csv", "coin.md", "coin.png", "summary.md", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    js = json.loads((out / "summary.json").read_text())
    assert js["config"]["settings"] == {"coin": {"n": 1000, "tol": 0.05}}    # its quick budget
    assert js["checks"]["coin"]["rows"][0]["n"] == 1000 and js["checks"]["coin"]["notes"] == ["fair coin"]
    assert "`mean`: fraction of heads" in (out / "coin.md").read_text()
    assert cmd_validate(args, config=quick_config(checks=("coin",), coin={"tol": -1.0})) == 1
    assert "FAIL  coin/mean" in (out / "summary.md").read_text()
    with pytest.raises(RegistryError, match="duplicate check name 'coin'"):
        register_check("coin")(type("Other", (Check,), {}))
