"""`repeval validate` end to end (repeval/validation/run.py): a tiny run of every built-in check (files,
provenance, PASS lines, rebuild from stored rows), non-zero exit on failure."""
from __future__ import annotations

import argparse
import json
import math

import pytest

from repeval.config import ConfigError
from repeval.validation import cmd_validate, quick_config, rebuild_reports, run_validation
from repeval.validation.run import default_jobs
from repeval.validation import groundtruth as gt
from tests.helpers import VALIDATION_CHECKS

pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert list(js["checks"]) == list(VALIDATION_CHECKS)
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
    assert [r["true_mi"] for r in t["rows"]] == pytest.approx([gt.student_t_mi(0.0, 1, 1.0)])   # the quick task
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


def test_checks_in_worker_processes_give_the_numbers_of_one_process(tmp_path):
    cfg = _tiny(checks=("ndm", "student_t", "ssim"))
    run_validation(cfg, tmp_path / "one", mode="test", quiet=True)
    run_validation(cfg, tmp_path / "two", mode="test", quiet=True, jobs=2)
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert one["jobs"] == 1 and two["jobs"] == 2 and list(two["checks"]) == list(one["checks"])
    for name in cfg.checks:
        assert two["checks"][name]["rows"] == one["checks"][name]["rows"], name
        assert two["checks"][name]["lines"] == one["checks"][name]["lines"], name
    assert "2 worker processes" in (tmp_path / "two" / "summary.md").read_text()
    assert "worker processes" not in (tmp_path / "one" / "summary.md").read_text()


def test_validate_jobs_must_be_positive(tmp_path):
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path, quiet=True, jobs=0)
    with pytest.raises(ConfigError, match="--jobs must be >= 1, got 0"):
        cmd_validate(args, config=_tiny(checks=("ssim",)))


def test_default_jobs_is_a_worker_per_core_on_cpu_and_one_on_a_gpu(monkeypatch):
    monkeypatch.setattr("repeval.validation.run.available_cpus", lambda: 4)
    assert default_jobs("cpu", 5) == 4 and default_jobs("cpu", 2) == 2 and default_jobs("cuda:0", 5) == 1
    monkeypatch.setattr("repeval.validation.run.available_cpus", lambda: 1)
    assert default_jobs("cpu", 5) == 1
