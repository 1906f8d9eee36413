"""``--executor local``: the shards as submitit local jobs on this host, ``jobs`` at a time.

submitit's ``LocalExecutor`` starts every submitted job at once, so the window of ``jobs`` running
shards is kept here: a shard is submitted when a worker slot frees up. Worker slot ``k`` gets device
``devices[k % len(devices)]``; a CUDA worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``) and
runs with ``--device cuda``, a CPU worker sees no GPU.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from .shard import Shard

# A local job has no scheduler time limit; submitit's default (2 min) would signal a time-out.
LOCAL_TIMEOUT_MIN = 60 * 24 * 365


def visible_gpu(device: str) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` entry of ``cuda[:N]`` seen through this process's own mask."""
    index = int(device.partition(":")[2] or 0)
    mask = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" in os.environ and index < len(mask):
        return mask[index]
    return str(index)


def run_local(make_shard: Callable[[str, str], Shard], models: list[str], folder, jobs: int,
              devices: list[str], on_start: Callable, on_end: Callable, poll_s: float = 0.5) -> None:
    """Run one shard per model, ``jobs`` at a time; ``on_start(model, job, device)`` and
    ``on_end(model, job)`` report progress. Ctrl-C cancels the running jobs."""
    import submitit

    ex = submitit.LocalExecutor(folder=folder)
    queue = list(models)
    running: dict[int, tuple[str, object]] = {}
    free = list(range(jobs))
    try:
        while queue or running:
            while queue and free:
                slot = free.pop(0)
                model, device = queue.pop(0), devices[slot % len(devices)]
                if device.startswith("cuda"):
                    ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=0,
                                         setup=[f"export CUDA_VISIBLE_DEVICES={visible_gpu(device)}"])
                    job = ex.submit(make_shard(model, "cuda"))
                else:
                    ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, gpus_per_node=0, setup=[])
                    job = ex.submit(make_shard(model, device))
                running[slot] = (model, job)
                on_start(model, job, device)
            time.sleep(poll_s)
            for slot, (model, job) in list(running.items()):
                if job.done():
                    del running[slot]
                    free.append(slot)
                    on_end(model, job)
    except BaseException:
        for model, job in running.values():
            job.cancel()
        raise
