"""Run the benchmark grid as shards — one model on one dataset each — on this host's CPUs/GPUs
(``--executor local``) or as a Slurm job array (``--executor slurm``), through submitit.

The launcher checks the options and the dataset once, writes a manifest under
``WORKDIR/launch/<id>/`` and submits one :class:`~repeval.launch.shard.Shard` per model, carrying the
run's :class:`~repeval.engine.session.RunRequest` for that model (serialised). The shards
share nothing but the filesystem: records under ``--results`` (atomic), checkpoints and features under
``--workdir`` (one lock per model, :mod:`repeval.store.locks`). ``repeval status`` reads it all back.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..store.progress import log
from .errors import LaunchError
from .layout import launch_folder, logs_folder, new_launch_id, outcome_path, read_outcome, shard_lock_path, \
    write_manifest
from .shard import Shard, logs_tail

__all__ = ["LaunchError", "Shard", "check_jobs", "launch"]

MAX_JOBS = 10_000


def _require_submitit(executor: str) -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise LaunchError(f"--executor {executor} needs submitit: pip install -e '.[slurm]' "
                          "(or pip install 'submitit>=1.5')") from None


def parse_devices(spec: str | None, default: str) -> list[str]:
    """``cuda:0,cuda:1`` -> ``["cuda:0", "cuda:1"]``; each must be cpu, cuda or cuda:N."""
    devices = [d.strip() for d in (spec or default).split(",") if d.strip()]
    for d in devices:
        kind, _, index = d.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise LaunchError(f"--devices: bad device {d!r}; expected cpu, cuda or cuda:N (e.g. cuda:0,cuda:1)")
    if any(d.startswith("cuda") for d in devices):
        import torch
        n = torch.cuda.device_count()
        bad = [d for d in devices if d.startswith("cuda") and int(d.partition(":")[2] or 0) >= n]
        if bad:
            raise LaunchError(f"--devices: {bad[0]} requested but this host has {n} CUDA device(s)")
    return devices


def _counts(args) -> tuple:
    """(option, value, lowest, highest) of every count an executor option takes."""
    return (("--slurm-time", args.slurm_time, 1, 525_600),
            ("--slurm-gpus", args.slurm_gpus, 0, 64), ("--slurm-cpus", args.slurm_cpus, 1, 4096),
            ("--slurm-mem-gb", args.slurm_mem_gb, 0.001, 65_536), ("--slurm-max-requeue", args.slurm_max_requeue, 0, 1000))


def check_jobs(jobs: int | None) -> None:
    """``--jobs`` in its range, for every executor (one line, before any data loads)."""
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise LaunchError(f"--jobs must be in [1, {MAX_JOBS}], got {jobs}")


def check_options(args) -> list[str]:
    """Executor options that make no sense together: one line, before any data loads. Returns the
    devices of the workers."""
    if args.executor == "inline":
        if args.devices is not None:
            raise LaunchError("--devices needs --executor local or --executor slurm")
        return [args.device]
    if getattr(args, "dry_run", False):
        raise LaunchError("--dry-run shows the plan in this process: drop --executor")
    for name, value, lo, hi in _counts(args):
        if value is not None and not lo <= value <= hi:
            raise LaunchError(f"{name} must be in [{lo}, {hi}], got {value}")
    if args.executor == "slurm" and args.devices:
        raise LaunchError("--devices is for --executor local; on Slurm use --device cuda with --slurm-gpus")
    devices = parse_devices(args.devices, args.device) if args.executor == "local" else [args.device]
    _require_submitit(args.executor)
    if args.executor == "slurm" and shutil.which("srun") is None:
        raise LaunchError("--executor slurm: no 'srun' on PATH; run this on a Slurm login node")
    return devices


def launch(req, args) -> int:
    """Run or submit every model of ``req`` (a :class:`~repeval.engine.session.RunRequest`) as its own
    shard; ``args``: the executor options (:mod:`repeval.launch.options`). See the module docstring."""
    from ..data import load_dataset
    from ..plugin.zoo import input_size_groups

    devices = check_options(args)
    if args.executor == "inline":
        raise LaunchError("launch() needs --executor local or slurm")
    spec, models = req.dataset, list(req.models)
    sizes = input_size_groups(models) if spec.startswith("imagefolder:") else [(None, models)]
    if len(sizes) > 1:
        raise LaunchError(f"{spec}: the models take different input sizes ("
                          + "; ".join(f"{s} px: {', '.join(ms)}" for s, ms in sizes) + "); launch each size separately")
    ds = load_dataset(spec, req.data_root, req.download, image_size=sizes[0][0])  # checked once
    label = ds.name
    del ds
    workdir, results = Path(req.workdir), Path(req.results)
    launch_id = new_launch_id()
    folder, logs = launch_folder(workdir, launch_id), logs_folder(workdir, launch_id)
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()

    def make_shard(model: str, device: str) -> Shard:
        return Shard(model, req.for_shard(model, device).to_json(), cwd, str(folder))

    manifest = {"id": launch_id, "executor": args.executor, "dataset": label,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "workdir": str(workdir.absolute()),
                "results": str(results.absolute()), "logs": str(logs),
                "shards": [{"model": m, "device": None, "job_id": None, "stdout": None, "stderr": None,
                            "outcome": str(outcome_path(folder, m)), "lock": str(shard_lock_path(folder, m)),
                            "request": None} for m in models]}
    entry = {s["model"]: s for s in manifest["shards"]}

    def record_job(model: str, job, device: str, shard: Shard) -> None:
        entry[model].update(device=device, job_id=str(job.job_id), stdout=str(job.paths.stdout),
                            stderr=str(job.paths.stderr), request=json.loads(shard.request))

    write_manifest(folder, manifest)
    if args.executor == "slurm":
        return _submit_slurm(args, req, make_shard, manifest, record_job, folder, logs)
    return _run_local(args, req, make_shard, devices, manifest, record_job, folder, logs, label)


def _submit_slurm(args, req, make_shard, manifest, record_job, folder, logs) -> int:
    from .slurm import submit_slurm

    shards = [make_shard(m, req.device) for m in req.models]
    jobs = submit_slurm(shards, logs, args)
    for shard, job in zip(shards, jobs):
        record_job(shard.model, job, req.device, shard)
    manifest["slurm_job"] = str(jobs[0].job_id).split("_")[0] if jobs else None
    write_manifest(folder, manifest)
    print(f"submitted Slurm job array {manifest['slurm_job']} ({len(jobs)} shards"
          + (f", at most {args.jobs} at once" if args.jobs else "") + f"); logs under {logs}\n"
          f"watch:  repeval status --workdir {req.workdir} --results {req.results}   (or squeue --me)\n"
          f"then:   repeval table --results {req.results}")
    return 0


def _run_local(args, req, make_shard, devices, manifest, record_job, folder, logs, label) -> int:
    from .local import run_local

    jobs = args.jobs or len(devices)
    shards: dict[str, Shard] = {}

    def build(model: str, device: str) -> Shard:
        shards[model] = make_shard(model, device)
        return shards[model]

    def on_start(model, job, device) -> None:
        record_job(model, job, device, shards[model])
        write_manifest(folder, manifest)
        log(f"[{model}] started on {device} (local job {job.job_id}, log {job.paths.stderr})", req.quiet)

    failed: list[str] = []

    def on_end(model, job) -> None:
        out = read_outcome(folder, model)
        if out and out.get("state") == "done":
            log(f"[{model}] done", req.quiet)
            return
        why = (out or {}).get("error") if out else None
        why = why or f"stopped without finishing; last log line: {logs_tail(job.paths.stderr) or '(empty)'}"
        failed.append(f"{model}: {why}")
        log(f"error: [{model}] failed: {why} (log {job.paths.stderr})")

    log(f"launch {manifest['id']}: {len(req.models)} shards on {label}, {jobs} at a time on "
        f"{', '.join(devices)}", req.quiet)
    try:
        run_local(build, list(req.models), logs, jobs, devices, on_start, on_end)
    except KeyboardInterrupt:
        print("repeval: interrupted; running shards were cancelled, finished records are kept, rerun to resume",
              file=sys.stderr)
        return 130
    if not req.no_table:
        from ..report.tables import print_tables
        print_tables(Path(req.results), label, list(req.models))
    n = len(req.models)
    print(f"{n} shard{'s' if n != 1 else ''}: {n - len(failed)} done, {len(failed)} failed", file=sys.stderr)
    for f in failed:
        print(f"  failed: {f}", file=sys.stderr)
    return 1 if failed else 0
