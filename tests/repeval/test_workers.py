"""`repeval run --jobs N` without a launcher (repeval/engine/workers.py): the models of one run in N
spawned worker processes. Their records are those of one process with the workers' thread count,
the parent hears each model's progress and trained epochs, a user's error in a worker stops the run
in one line, and the default number of workers follows the command line, not the work left."""
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from repeval.cli import main
from repeval.data import load_digits
from repeval.engine.presets import PRESETS
from repeval.engine.runner import RunOptions, RunSummary, _claim_name, help_model, resolve_configs, run
from repeval.engine.workers import ModelWorkers, WorkerSetup, default_jobs
from repeval.estimators.mi import cpu_threads
from repeval.store.locks import claim, lock_holder, model_lock_path
from repeval.store.records import ResultsLayout
from repeval.store.progress import current_setup, setup_logging
from tests.helpers import read_records, wait_for

PLUGIN = '''
from collections import OrderedDict
import torch
from torch import nn
from repeval import register_encoder

class Broken(nn.Module):
    def forward(self, x):
        return OrderedDict(bad=torch.zeros(3, 5))

register_encoder("broken-w", Broken)
'''


def _args(root: Path, models: str, *extra: str) -> list[str]:
    return ["run", "--models", models, "--protocols", "mlp,ndm", "--quiet", "--no-table",
            "--workdir", str(root / "w"), "--results", str(root / "r"), "--seeds", "1",
            "--set", "train.epochs=1", "--set", "train.max_train=128", "--set", "mlp.epochs=2",
            "--set", "ndm.steps=20", "--set", "ndm.eval_shuffles=1", *extra]


def _without_timing(recs: dict) -> dict:
    return {k: {f: v for f, v in r.items() if f not in ("timing_s", "created", "provenance")} for k, r in recs.items()}


def test_workers_write_the_records_of_one_process_with_their_thread_count(tmp_path, capfd):
    with cpu_threads(1):
        assert main(_args(tmp_path / "inline", "random,ae")) == 0
    assert main(_args(tmp_path / "jobs", "random,ae", "--jobs", "2")) == 0
    err = capfd.readouterr().err
    assert "2 workers" not in err and "8 records written, 0 already present" in err   # --quiet: no info lines
    inline, jobs = read_records(tmp_path / "inline" / "r"), read_records(tmp_path / "jobs" / "r")
    assert len(jobs) == 2 * (3 + 1) and _without_timing(jobs) == _without_timing(inline)
    runtimes = {json.dumps(r["provenance"]["runtime"], sort_keys=True) for r in jobs.values()}
    assert {json.loads(t)["torch_threads"] for t in runtimes} == {torch.get_num_threads() // 2}
    assert {json.loads(t)["omp_wait_policy_set_by"] for t in runtimes} == \
        {r["provenance"]["runtime"]["omp_wait_policy_set_by"] for r in inline.values()}
    assert not (tmp_path / "jobs" / "w" / "claims").exists()      # the run's claims are removed
    # a rerun finds every record present, in the workers as in one process; the workers it started
    # while planning are stopped without a word
    assert main(_args(tmp_path / "jobs", "random,ae", "--jobs", "2")) == 0
    assert capfd.readouterr().err.strip().splitlines() == ["0 records written, 8 already present, 0 failures"]


def test_a_helping_worker_writes_the_records_of_the_one_it_helps_and_skips_claimed_ones(tmp_path):
    """help_model: the unclaimed calls of the records another worker evaluates, from the snapshot and
    cached features it left, with its training and extraction seconds; nothing trained. A call that
    worker claimed and half wrote (mlp's seeds 0 and 1 on conv: seed 0 written) is not recomputed."""
    ds = load_digits()
    opts = RunOptions(models=["ae"], protocols=["mlp", "ndm"], preset=PRESETS.get("quick"), seeds=2,
                      overrides={"train": {"epochs": 1, "max_train": 128}, "mlp": {"epochs": 2},
                                 "ndm": {"steps": 20, "eval_shuffles": 1}},
                      workdir=tmp_path / "w", results=tmp_path / "r", quiet=True)
    with cpu_threads(1):
        assert not run(opts, ds).failures
        ref = read_records(tmp_path / "r")
        assert len(ref) == 2 * (3 + 1)
        layout, claims = ResultsLayout(opts.results, ds.name), tmp_path / "claims"
        taken = layout.record("ae", "mlp", "conv", 0, 1, 0)      # the call of mlp on conv, seeds 0 and 1
        paths = sorted(str(p) for p in (tmp_path / "r").rglob("*.json"))
        for path in paths:
            if path != str(taken):
                Path(path).unlink()
        assert claim(claims, _claim_name(taken)) and not claim(claims, _claim_name(taken))
        timing, summary, reports = {"train": 1.5, "extract": 0.25, "features_cached": False}, RunSummary(), []
        help_model("ae", replace(opts, claims=claims), resolve_configs(opts), ds, layout, summary,
                   lambda *a: reports.append(a), 1, timing, paths)
    got = read_records(tmp_path / "r")
    assert not summary.failures and len(summary.written) == len(reports) == 6 and len(got) == 7
    assert set(ref) - set(got) == {"digits/records/ae/mlp/conv-seed1-epoch1.json"}
    assert _without_timing(got) == _without_timing({k: ref[k] for k in got})     # history, metrics, hashes
    del got["digits/records/ae/mlp/conv-seed0-epoch1.json"]
    assert all({k: r["timing_s"][k] for k in timing} == timing for r in got.values())
    assert not list((tmp_path / "w" / "models").rglob("train.pt.tmp*"))
    again = RunSummary()          # every call claimed now: nothing left to compute
    help_model("ae", replace(opts, claims=claims), resolve_configs(opts), ds, layout, again, print, 1, timing, paths)
    assert again.written == [] and again.failures == []


def test_workers_started_for_a_run_that_cannot_begin_are_stopped_on_the_spot():
    workers = ModelWorkers(2, WorkerSetup(load_digits, 1, current_setup()))
    with pytest.raises(ValueError, match="no data"):
        with workers:      # started as the run starts; then the data cannot be loaded
            procs = wait_for(lambda: list(workers._pool._processes.values()), "the workers to spawn")
            raise ValueError("no data")
    assert workers._pool is None and not any(p.is_alive() for p in procs)


def test_the_parent_hears_each_models_progress_and_trained_epochs(tmp_path, capfd, restore_logging):
    setup_logging(0)     # info lines: the overall line
    ds, epochs = load_digits(), []
    opts = RunOptions(models=["random", "ae"], protocols=["knn"], preset=PRESETS.get("quick"),
                      overrides={"train": {"epochs": 2, "max_train": 128}}, workdir=tmp_path / "w",
                      results=tmp_path / "r", on_epoch=lambda *a: epochs.append(a))
    summary = run(opts, ds, ModelWorkers(2, WorkerSetup(load_digits, 1, current_setup())))
    assert len(summary.written) == 2 * 3 and not summary.failures
    history = read_records(tmp_path / "r")["digits/records/ae/knn/y-seed0-epoch2.json"]["history"]
    assert epochs == [("ae", 1, history[0]), ("ae", 2, history[1])]
    overall = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("[overall]")]
    assert overall[0].startswith("[overall] 6 records to compute over 2 model(s)")
    assert any(ln.startswith("[overall] 6/6 records") for ln in overall[1:])


def test_a_users_error_in_a_worker_stops_the_run_in_one_line(tmp_path, capfd):
    plugin = tmp_path / "plug.py"
    plugin.write_text(PLUGIN)
    assert main(["--plugin", str(plugin)] + _args(tmp_path, "broken-w,random", "--jobs", "2")) == 2
    err = capfd.readouterr().err.strip()
    assert "\n" not in err and "encoder 'broken-w' tap 'bad' has shape (3, 5)" in err


@pytest.mark.parametrize("jobs", ["0", "10001"])
def test_jobs_out_of_range_is_one_line(tmp_path, capsys, jobs):
    assert main(_args(tmp_path, "random", "--jobs", jobs)) == 2
    assert f"--jobs must be in [1, 10000], got {jobs}" in capsys.readouterr().err


def test_default_jobs_follows_the_command_not_the_work_left():
    threads = torch.get_num_threads()
    assert default_jobs("cpu", 13) == threads and default_jobs("cpu", 2) == threads
    assert default_jobs("cpu", 1) == 1          # one model keeps every thread
    if torch.cuda.is_available():
        assert default_jobs("cuda", 13) == 1


SLOW = '''
import os, time
from repeval import Family, register_model

@register_model("slowfam-w", "Slow test family")
class Slow(Family):
    """A tiny trained family whose steps can be slowed down, so a test can stop it mid-training."""
    def train_step(self, x, labels, index, opt):
        time.sleep(float(os.environ.get("SLOW_STEP_S", "0")))
        loss = self.encoder(x)["y"].pow(2).mean()
        self.update(opt["model"], loss)
        return {"loss": loss.detach()}
'''


def _slow_args(tmp_path: Path, root: Path) -> list[str]:
    plugin = tmp_path / "slow_w.py"
    plugin.write_text(SLOW)
    return ["--plugin", str(plugin), *_args(root, "random,slowfam-w", "--jobs", "2", "--set", "train.epochs=3")]


def _holder(root: Path) -> int:
    """The pid of the process running slowfam-w (the holder of its model lock)."""
    lock = model_lock_path(root / "w", "digits", "slowfam-w")
    return int(wait_for(lambda: lock_holder(lock), "slowfam-w's lock").split()[1])


STOPS = {   # how the run is stopped -> (exit status, its one line)
    "SIGTERM to the run": (143, "repeval: terminated (SIGTERM); finished records are kept, rerun to resume"),
    "Ctrl-C to the process group": (130, "repeval: interrupted; finished records are kept, rerun to resume"),
    "SIGKILL to a worker": (2, "a worker process died (killed, or out of memory?) while running "),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_a_stopped_run_is_one_line_and_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch, stop):
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.delenv("SLOW_STEP_S", raising=False)
    cmd = [sys.executable, "-m", "repeval"]
    ref, root = tmp_path / "ref", tmp_path / "stopped"
    assert subprocess.run(cmd + _slow_args(tmp_path, ref), capture_output=True).returncode == 0
    proc = subprocess.Popen(cmd + _slow_args(tmp_path, root), stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLOW_STEP_S": "0.5"}, start_new_session=True)
    wait_for(lambda: next((root / "w" / "models").rglob("train.pt"), None), "slowfam-w's first checkpoint")
    worker = _holder(root)
    if stop.startswith("SIGTERM"):
        os.kill(proc.pid, signal.SIGTERM)
    elif stop.startswith("Ctrl-C"):
        os.killpg(proc.pid, signal.SIGINT)       # what a terminal sends: the run and its workers
    else:
        os.kill(worker, signal.SIGKILL)
    err = proc.communicate(timeout=120)[1].strip().splitlines()
    code, line = STOPS[stop]
    assert proc.returncode == code and len(err) == 1 and line in err[0], err     # no worker traceback, no warning
    if code == 2:
        assert "slowfam-w" in err[0]                 # the model the dead worker left unfinished
    wait_for(lambda: not Path(f"/proc/{worker}").exists(), "the worker to end", timeout=30)
    assert not (root / "r" / "digits" / "records" / "slowfam-w").exists()    # it was stopped mid-training
    assert subprocess.run(cmd + _slow_args(tmp_path, root), capture_output=True).returncode == 0
    assert _without_timing(read_records(root / "r")) == _without_timing(read_records(ref / "r"))


def test_the_dry_run_shares_its_estimate_among_the_workers(tmp_path, capsys):
    assert main(_args(tmp_path, "random,ae", "--jobs", "2", "--dry-run")) == 0
    total = capsys.readouterr().out.strip().splitlines()[-1]
    assert total.startswith("estimated total: ") and " in 2 worker processes (" in total
    assert not (tmp_path / "r").exists()      # a dry run computes nothing, spawns nothing
