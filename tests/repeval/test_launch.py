"""The grid as shards: `--executor local` (submitit local jobs), `--executor slurm` (driven with fake
Slurm commands), concurrent runs on the same folders, and `repeval status`.

End-to-end tests run up to 2 models (`random` and a tiny trained plugin family whose steps can be
slowed down) x 1 protocol on the digits data, and compare every record with one inline run (timings,
creation time and provenance aside). Each process costs a few seconds of imports: they are few.
"""
import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from repeval.cli import _merge_globals, build_parser, main, run_request
from repeval.engine.session import RunRequest
from repeval.launch.layout import launch_root, write_manifest, write_outcome
from repeval.launch.options import LAUNCH_DESTS
from repeval.launch.shard import Shard
from repeval.store.locks import lock_holder, model_lock, model_lock_path
from repeval.registry import MODELS
from repeval.store.storage import load_sealed
from tests.helpers import wait_for

needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit not installed (pip install -e '.[slurm]')")

SLOW = '''
import os, time
from repeval import Family, register_model

@register_model("slowfam", "Slow test family")
class Slow(Family):
    """A tiny trained family whose steps can be slowed down, so a test can stop it mid-training."""
    def train_step(self, x, labels, index, opt):
        time.sleep(float(os.environ.get("SLOW_STEP_S", "0")))
        if os.environ.get("SLOW_STEPS_LOG"):
            with open(os.environ["SLOW_STEPS_LOG"], "a") as f:
                f.write(f"{os.getpid()}\\n")
        loss = self.encoder(x)["y"].pow(2).mean()
        self.update(opt["model"], loss)
        return {"loss": loss.detach()}
'''
EPOCHS, STEPS = 3, 2        # train.max_train=128 / batch 64


def _records(results: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(Path(results).rglob("*.json")):
        r = json.loads(p.read_text())
        for k in ("timing_s", "created", "provenance"):
            r.pop(k)
        out[str(p.relative_to(results))] = r
    return out


def _no_tmp_files(*folders: Path) -> bool:
    return not any(p for f in folders for p in Path(f).rglob("*.tmp"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The digits grid (random + slowfam, ndm) and its records from one inline run."""
    base = tmp_path_factory.mktemp("grid")
    plugin = base / "slow_plugin.py"
    plugin.write_text(SLOW)

    def args(root: Path, *extra: str, models: str = "random,slowfam") -> list[str]:
        return ["--plugin", str(plugin), "run", "--models", models, "--protocols", "ndm", "--quiet",
                "--no-table", "--workdir", str(root / "w"), "--results", str(root / "r"),
                "--set", f"train.epochs={EPOCHS}", "--set", "train.max_train=128", "--set", "ndm.steps=1",
                "--set", "ndm.eval_shuffles=1", *extra]

    try:
        assert main(args(base / "inline")) == 0
        ref = _records(base / "inline" / "r")
        assert len(ref) == 2 and all(r["success"] for r in ref.values())
        slow = {k: v for k, v in ref.items() if "/slowfam/" in k}
        yield SimpleNamespace(args=args, ref=ref, slow=slow, plugin=plugin)
    finally:
        MODELS.unregister("slowfam")
        for name in [m for m in sys.modules if m.startswith("repeval_plugin_slow_plugin_")]:
            del sys.modules[name]


@pytest.fixture
def same_threads(monkeypatch):
    """Subprocesses use the thread count of this process (conftest: 2): CPU numbers depend on it."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    monkeypatch.delenv("SLOW_STEP_S", raising=False)


def _holder_pid(lock: Path) -> int:
    return int(wait_for(lambda: lock_holder(lock), f"a holder of {lock}").split()[1])


# -- options, argv, status: no processes ------------------------------------------------------------

def test_shard_request_carries_every_run_option_but_the_launchers():
    parser = build_parser()
    user = ["--plugin", "p.py", "-v", "run", "--models", "ae", "vae,dim-g", "--pretrained", "x=e.pt",
            "--protocols", "mlp", "svm", "--dataset", "npz:d", "--preset", "cpu", "--seeds", "2",
            "--device", "cuda:1", "--workdir", "w", "--results", "r", "--data-root", "dr", "--download",
            "--set", "train.epochs=2", "--set", "mlp.milestones=(2,3)", "--quiet", "--executor", "slurm",
            "--jobs", "3", "--slurm-partition", "gpu", "--slurm", "qos=high", "--slurm-setup", "module load x",
            "--rerun", "ae,vae/mlp", "--train-seeds", "0,1", "--tensorboard", "tb", "--log-file", "l.txt", "-v"]
    args = _merge_globals(parser.parse_args(user))
    req = run_request(args, ["ae", "vae", "dim-g"], ["mlp", "svm"])
    shard = req.for_shard("vae", "cuda")
    assert RunRequest.from_json(shard.to_json()) == shard            # what the job unpickles is what was meant
    assert shard == RunRequest(
        models=("vae",), protocols=("mlp", "svm"), preset="cpu", dataset="npz:d",
        overrides={"train": {"epochs": "2"}, "mlp": {"milestones": "(2,3)"}}, seeds=2, train_seeds=(0, 1),
        device="cuda", workdir="w", results="r", data_root="dr", download=True, rerun=("vae/mlp",),
        tensorboard="tb", no_table=True, plugins=("p.py",), pretrained=("x=e.pt",), verbose=2, quiet=True,
        log_file="l.txt", jobs=1)
    # every option of `run` reaches the request, or is the launcher's own: a new option cannot be dropped
    run_parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    carried = {"models", "protocols", "dataset", "preset", "config", "seeds", "train_seeds", "device", "workdir",
               "results", "data_root", "download", "set", "no_table", "force", "rerun", "train_only", "dry_run",
               "tensorboard", "help", *(f"sub_{d}" for d in ("plugin", "pretrained", "backbone", "verbose", "quiet",
                                                            "log_file"))}
    assert {a.dest for a in run_parser._actions} - carried == set(LAUNCH_DESTS)


@pytest.mark.parametrize("extra, message", [
    (["--devices", "cpu"], "--devices needs --executor local or --executor slurm"),
    (["--executor", "local", "--jobs", "0"], "--jobs must be in [1, 10000], got 0"),
    (["--executor", "local", "--devices", "gpu0"], "--devices: bad device 'gpu0'"),
    (["--executor", "slurm", "--devices", "cuda:0"], "--devices is for --executor local"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, tiny_run, capsys, extra, message):
    assert main(tiny_run(*extra)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "work").exists()   # nothing ran


def test_without_submitit_the_error_says_how_to_install_it(tmp_path, tiny_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)    # import submitit -> ImportError
    assert main(tiny_run("--executor", "slurm")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs submitit: pip install -e '.[slurm]'" in err


@needs_submitit
def test_slurm_without_srun_is_a_one_line_error(tmp_path, tiny_run, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))            # no srun, no sbatch
    assert main(tiny_run("--executor", "slurm")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no 'srun' on PATH" in err
    assert not (tmp_path / "work").exists()


def test_status_reads_every_state_from_the_filesystem(tmp_path, capsys):
    work, results = tmp_path / "w", tmp_path / "r"
    folder = launch_root(work) / "20990101-000000.000-1"
    logs = tmp_path / "logs"
    logs.mkdir()
    shards = []
    for m in ("m-done", "m-failed", "m-killed", "m-requeued", "m-running", "m-queued"):
        shards.append({"model": m, "job_id": f"7_{len(shards)}", "lock": str(folder / f"{m}.lock"),
                       "stderr": str(logs / f"{m}.err"), "outcome": str(folder / f"{m}.outcome.json")})
    write_manifest(folder, {"id": folder.name, "executor": "slurm", "slurm_job": "7", "dataset": "digits",
                            "shards": shards})
    write_outcome(folder, "m-done", "done", 0)
    write_outcome(folder, "m-failed", "failed", 2, "repeval: error: bad thing in m-failed")
    write_outcome(folder, "m-requeued", "requeued")
    (logs / "m-killed.err").write_text("[m-killed] epoch 1/3 loss=1\n[m-killed] epoch 2/3 loss=0.5\n")
    rec = results / "digits" / "records" / "m-done" / "mlp" / "y-seed0.json"
    rec.parent.mkdir(parents=True)
    rec.write_text("{}")
    with model_lock(folder / "m-running.lock"), model_lock(model_lock_path(work, "digits", "inl")):
        assert main(["status", "--workdir", str(work), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert "launch 20990101-000000.000-1 (slurm, Slurm job 7, 6 shards on digits)" in out
    assert rows["m-done"].split()[1:4] == ["digits", "done", "1"]
    assert " failed " in rows["m-failed"] and "repeval: error: bad thing in m-failed" in rows["m-failed"]
    assert " failed " in rows["m-killed"] and "last log line: [m-killed] epoch 2/3 loss=0.5" in rows["m-killed"]
    assert " requeued " in rows["m-requeued"] and "resumes from its checkpoint" in rows["m-requeued"]
    assert " running " in rows["m-running"] and f"pid {os.getpid()}" in rows["m-running"]
    assert " not started " in rows["m-queued"]
    assert " running " in rows["inl"] and "(inline)" in rows["inl"]
    assert main(["status", "--workdir", str(work), "--launch", "nope"]) == 2


@needs_submitit
def test_checkpoint_requeues_the_same_shard(tmp_path):
    shard = Shard("ae", RunRequest(("ae",), ("mlp",)).to_json(), str(tmp_path), str(tmp_path))
    again = shard.checkpoint()
    assert again.function == shard and again.args == () and again.kwargs == {}
    assert json.loads((tmp_path / "ae.outcome.json").read_text())["state"] == "requeued"


# -- end to end --------------------------------------------------------------------------------------

def test_two_runs_at_once_do_the_work_once(grid, tmp_path, same_threads, monkeypatch):
    """Two `repeval run` on the same folders: every record once, equal to one run's; trained once."""
    root, steps = tmp_path / "c", tmp_path / "steps.log"
    monkeypatch.setenv("SLOW_STEPS_LOG", str(steps))
    cmd = [sys.executable, "-m", "repeval", *grid.args(root, "--jobs", "1")]   # one process each, like the reference
    errs = [tmp_path / f"err{i}.txt" for i in range(2)]
    with model_lock(model_lock_path(root / "w", "digits", "slowfam")):   # both reach slowfam together
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(e, "w")) for e in errs]
        wait_for(lambda: all("[slowfam] pid " in e.read_text() for e in errs), "both runs waiting for slowfam")
    assert [p.wait(300) for p in procs] == [0, 0], [e.read_text() for e in errs]
    assert all("is running this model; waiting" in e.read_text() for e in errs)
    assert len(steps.read_text().split()) == EPOCHS * STEPS          # one training, not two
    assert _records(root / "r") == grid.ref
    assert _no_tmp_files(root)


@needs_submitit
def test_local_jobs_2_equal_inline_after_a_killed_job_is_rerun(grid, tmp_path, same_threads, monkeypatch, capsys):
    """`--executor local --jobs 2`: one job killed mid-training, the other finishes; a rerun
    resumes the killed one, and every record equals the inline run's."""
    root = tmp_path / "k"
    args = grid.args(root, "--executor", "local", "--jobs", "2")
    monkeypatch.setenv("SLOW_STEP_S", "0.4")
    codes: list[int] = []
    launcher = threading.Thread(target=lambda: codes.append(main(args)))
    launcher.start()
    ckpt = wait_for(lambda: next((root / "w" / "models").rglob("train.pt"), None), "slowfam's first checkpoint")
    os.kill(_holder_pid(model_lock_path(root / "w", "digits", "slowfam")), signal.SIGKILL)
    launcher.join(300)
    err = capsys.readouterr().err
    assert codes == [1], err
    assert "[slowfam] failed: stopped without finishing" in err and "2 shards: 1 done, 1 failed" in err
    assert load_sealed(ckpt)["epoch"] < EPOCHS
    m = json.loads(next(launch_root(root / "w").glob("*/manifest.json")).read_text())
    assert [s["model"] for s in m["shards"]] == ["random", "slowfam"] and all(s["job_id"] for s in m["shards"])
    assert all(Path(s["stderr"]).parent.parent == root / "w" / "submitit" for s in m["shards"])
    assert main(["status", "--workdir", str(root / "w"), "--results", str(root / "r")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[3:]}
    assert " done " in rows["random"] and " failed " in rows["slowfam"]
    assert "stopped without finishing" in rows["slowfam"]

    monkeypatch.setenv("SLOW_STEP_S", "0")
    assert main(grid.args(root, "--executor", "local", "--jobs", "2", models="slowfam")) == 0
    assert _records(root / "r") == grid.ref
    assert _no_tmp_files(root)


FAKE_SLURM = {
    "sbatch": 'cp "$1" "$FAKE_SLURM/job.sh"; echo "sbatch $*" >> "$FAKE_SLURM/calls"; echo "Submitted batch job 4242"',
    "srun": 'while [ $# -gt 0 ]; do case "$1" in --output|--error) shift 2;; --*) shift;; *) break;; esac; done\n'
            'exec "$@"',
    "scontrol": 'echo "scontrol $*" >> "$FAKE_SLURM/calls"',
    "squeue": 'echo "squeue $*" >> "$FAKE_SLURM/calls"',
    "sacct": 'echo "sacct $*" >> "$FAKE_SLURM/calls"; echo "JobID|State|NodeList"',
    "scancel": 'echo "scancel $*" >> "$FAKE_SLURM/calls"',
}


@needs_submitit
def test_slurm_job_array_with_fake_slurm_runs_preempts_and_resumes(grid, tmp_path, same_threads, monkeypatch,
                                                                   capsys):
    """sbatch receives one job array; each task's command, run as Slurm would, writes the records;
    a preempted task (USR2) requeues itself through `scontrol requeue` and resumes to the same numbers."""
    from submitit.core.utils import DelayedSubmission

    fake, root = tmp_path / "fake", tmp_path / "s"
    fake.mkdir()
    for name, body in FAKE_SLURM.items():
        (fake / name).write_text("#!/bin/bash\n" + body + "\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(fake))
    assert main(grid.args(root, "--executor", "slurm", "--jobs", "1", "--slurm-partition", "debug",
                          "--slurm-time", "30", "--slurm-cpus", "2", "--slurm-mem-gb", "4", "--slurm", "qos=low",
                          "--slurm", "reservation=r1", "--slurm-setup", "export FOO=1")) == 0
    assert "submitted Slurm job array 4242 (2 shards, at most 1 at once)" in capsys.readouterr().out
    m = json.loads(next(launch_root(root / "w").glob("*/manifest.json")).read_text())
    logs = Path(m["logs"])
    assert logs.parent == root / "w" / "submitit"

    script = (fake / "job.sh").read_text()
    sbatch = {ln for ln in script.splitlines() if ln.startswith("#SBATCH")}
    assert {"#SBATCH --array=0-1%1", "#SBATCH --partition=debug", "#SBATCH --time=30", "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=4GB", "#SBATCH --qos=low", "#SBATCH --reservation=r1", "#SBATCH --signal=USR2@90",
            "#SBATCH --job-name=repeval", f"#SBATCH --output={logs}/%A_%a_0_log.out",
            f"#SBATCH --error={logs}/%A_%a_0_log.err"} <= sbatch
    assert not any("gpu" in ln for ln in sbatch)
    assert "export FOO=1" in script
    command = shlex.split([ln for ln in script.splitlines() if ln.strip()][-1])
    assert command[0] == "srun" and command[-5:] == [sys.executable, "-u", "-m", "submitit.core._submit", str(logs)]
    for i, model in enumerate(["random", "slowfam"]):      # what each array task runs
        shard = DelayedSubmission.load(logs / f"4242_{i}_submitted.pkl").function
        assert isinstance(shard, Shard) and shard.model == model and shard.cwd == os.getcwd()
        user = _merge_globals(build_parser().parse_args(grid.args(root)))
        assert shard.request == run_request(user, ["random", "slowfam"], ["ndm"]).for_shard(model, "cpu").to_json()
        assert m["shards"][i]["job_id"] == f"4242_{i}"

    def task(i: int, **env) -> subprocess.Popen:
        env = {**os.environ, "SLURM_JOB_ID": str(4300 + i), "SLURM_ARRAY_JOB_ID": "4242",
               "SLURM_ARRAY_TASK_ID": str(i), "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
               "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", **env}
        out, err = (open(logs / f"4242_{i}_0_log.{k}", "a") for k in ("out", "err"))
        return subprocess.Popen(["bash", str(fake / "job.sh")], env=env, stdout=out, stderr=err)

    preempted = task(1, SLOW_STEP_S="0.4")            # task 0 (random) is not run: one is enough
    wait_for(lambda: next((root / "w" / "models").rglob("train.pt"), None), "slowfam's first checkpoint")
    os.kill(_holder_pid(model_lock_path(root / "w", "digits", "slowfam")), signal.SIGUSR2)
    assert preempted.wait(300) != 0
    assert "scontrol requeue 4242_1" in (fake / "calls").read_text()
    assert main(["status", "--workdir", str(root / "w"), "--results", str(root / "r")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[3:]}
    assert " not started " in rows["random"] and " requeued " in rows["slowfam"]

    assert task(1).wait(300) == 0                          # Slurm starts the requeued task again
    assert _records(root / "r") == grid.slow
    assert main(["status", "--workdir", str(root / "w"), "--results", str(root / "r")]) == 0
    assert "1 done, 1 not started" in capsys.readouterr().out
