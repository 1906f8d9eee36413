"""Command-line options of ``repeval run --executor ...`` and of ``repeval status``.

The launcher's own options: they are not passed on to the shards; every other ``run`` option is,
inside the run's :class:`~repeval.engine.session.RunRequest`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

EXECUTORS = ("inline", "local", "slurm")


def add_run_options(r: argparse.ArgumentParser) -> None:
    """The launcher's options on the ``run`` subcommand."""
    g = r.add_argument_group("executor (one shard = one model on the dataset, in its own process)")
    g.add_argument("--executor", choices=EXECUTORS, default="inline",
                   help="inline: this process (default); local: submitit local jobs on this host; "
                        "slurm: one Slurm job array (needs the 'slurm' extra)")
    g.add_argument("--jobs", type=int, metavar="N",
                   help="inline: worker processes sharing this run's models and torch threads (default on "
                        "CPU: one per torch thread when two or more models are asked for, else 1; 1 on "
                        "a GPU); local: shards running at once (default: one per --devices entry, else "
                        "1); slurm: shards at once (default: all)")
    g.add_argument("--devices", metavar="LIST",
                   help="local: devices given to the workers round-robin, e.g. cuda:0,cuda:1 "
                        "(each worker sees only its GPU)")
    g.add_argument("--slurm-partition", metavar="NAME")
    g.add_argument("--slurm-time", type=int, default=240, metavar="MIN",
                   help="time limit per job in minutes; a job that reaches it is requeued and resumes "
                        "from its last epoch checkpoint (default 240)")
    g.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per job (default 1 with --device cuda, else 0)")
    g.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per job")
    g.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="memory per job")
    g.add_argument("--slurm-max-requeue", type=int, default=10, metavar="N",
                   help="requeues after a time-out before a job gives up (default 10)")
    g.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE", dest="slurm_extra",
                   help="any other submitit slurm parameter (qos=high, account=x, constraint=a100, "
                        "exclude=node1) or raw sbatch option (repeatable)")
    g.add_argument("--slurm-setup", action="append", default=[], metavar="CMD",
                   help="shell line run in the job before repeval, e.g. 'module load cuda' (repeatable)")


LAUNCH_DESTS = frozenset({"executor", "jobs", "devices", "slurm_partition", "slurm_time", "slurm_gpus",
                          "slurm_cpus", "slurm_mem_gb", "slurm_max_requeue", "slurm_extra", "slurm_setup"})


def add_status_command(sub) -> None:
    s = sub.add_parser("status", help="per shard of the last launch: done / running / failed / not started")
    s.add_argument("--workdir", default=".repeval", type=Path, help="the run's --workdir")
    s.add_argument("--results", default="results", type=Path, help="the run's --results")
    s.add_argument("--launch", metavar="ID", help="a launch id under WORKDIR/launch/ (default: the latest)")
