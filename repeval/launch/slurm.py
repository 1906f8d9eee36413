"""``--executor slurm``: every shard as one task of a single Slurm job array (submitit.AutoExecutor).

Each task runs ``repeval run`` for its model; Slurm's time-out or preemption signal (USR2, sent
``signal_delay_s`` before the kill) makes submitit call :meth:`repeval.launch.shard.Shard.checkpoint`
and requeue the task, which resumes from its last per-epoch checkpoint. Logs go to
``WORKDIR/submitit/<launch id>/``.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import LaunchError
from .shard import Shard


def slurm_parameters(opts) -> dict:
    """submitit ``update_parameters`` keywords from the ``--slurm-*`` options (``opts``: the parsed args)."""
    from submitit.slurm.slurm import SlurmExecutor

    gpus = opts.slurm_gpus if opts.slurm_gpus is not None else (1 if opts.device.startswith("cuda") else None)
    params = {"name": "repeval", "timeout_min": opts.slurm_time, "gpus_per_node": gpus,
              "cpus_per_task": opts.slurm_cpus, "mem_gb": opts.slurm_mem_gb,
              "slurm_partition": opts.slurm_partition, "slurm_array_parallelism": opts.jobs,
              "slurm_setup": list(opts.slurm_setup) or None}
    known = SlurmExecutor._valid_parameters()
    extra: dict = {}
    for item in opts.slurm_extra:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise LaunchError(f"--slurm expects KEY=VALUE (e.g. qos=high), got {item!r}")
        value = int(value) if value.strip().isdigit() else value.strip()
        if key.replace("-", "_") in known:
            params[f"slurm_{key.replace('-', '_')}"] = value
        else:
            extra[key] = value            # a raw sbatch option, e.g. --slurm requeue=true is not needed
    if extra:
        params["slurm_additional_parameters"] = extra
    return {k: v for k, v in params.items() if v is not None}


def submit_slurm(shards: list[Shard], folder: Path, opts) -> list:
    """Submit ``shards`` as one job array; returns submitit's jobs (one per shard, same order)."""
    import submitit

    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=opts.slurm_max_requeue)
        ex.update_parameters(**slurm_parameters(opts))
        return ex.submit_array(shards)
    except RuntimeError as e:
        if "srun" in str(e):
            raise LaunchError("--executor slurm: no 'srun' on PATH; run this on a Slurm login node") from None
        raise LaunchError(f"Slurm submission failed: {_first_line(e)}") from None
    except (AssertionError, NameError, ValueError) as e:
        raise LaunchError(f"bad Slurm parameter: {_first_line(e)}") from None
    except (OSError, subprocess.SubprocessError) as e:
        raise LaunchError(f"sbatch failed: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
