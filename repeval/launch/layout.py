"""Where a launch keeps its state: the shared filesystem is the only channel between the launcher,
the jobs and ``repeval status``.

``WORKDIR/launch/<id>/manifest.json``      the shards, their job ids, run requests and log files
``WORKDIR/launch/<id>/<model>.outcome.json`` written by the shard when it ends (done / failed / requeued)
``WORKDIR/launch/<id>/<model>.lock``       held by the shard's process while it runs
``WORKDIR/submitit/<id>/``                 submitit's pickles and the jobs' stdout/stderr logs
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..store.storage import atomic_write_json, read_json


def launch_root(workdir: str | Path) -> Path:
    return Path(workdir).absolute() / "launch"


def new_launch_id() -> str:
    now = time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}-{os.getpid()}"


def launch_folder(workdir: str | Path, launch_id: str) -> Path:
    return launch_root(workdir) / launch_id


def logs_folder(workdir: str | Path, launch_id: str) -> Path:
    return Path(workdir).absolute() / "submitit" / launch_id


def outcome_path(folder: str | Path, model: str) -> Path:
    return Path(folder) / f"{model}.outcome.json"


def shard_lock_path(folder: str | Path, model: str) -> Path:
    return Path(folder) / f"{model}.lock"


def write_manifest(folder: Path, manifest: dict) -> Path:
    return atomic_write_json(Path(folder) / "manifest.json", manifest)


def read_manifest(folder: Path) -> dict | None:
    try:
        m = read_json(Path(folder) / "manifest.json")
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("shards"), list) else None


def write_outcome(folder: str | Path, model: str, state: str, exit_code: int | None = None,
                  error: str | None = None) -> Path:
    return atomic_write_json(outcome_path(folder, model), {
        "model": model, "state": state, "exit": exit_code, "error": error, "host": socket.gethostname(),
        "pid": os.getpid(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_outcome(folder: str | Path, model: str) -> dict | None:
    try:
        o = read_json(outcome_path(folder, model))
    except (OSError, ValueError):
        return None
    return o if isinstance(o, dict) else None
