"""Benchmark: the default ``repeval run`` (every model x every protocol on digits, ``quick`` preset)
from an empty folder, in one process (``--jobs 1``: every torch thread on one model at a time)
against the default (one worker process per torch thread, :mod:`repeval.engine.workers`), and the
default again on its own folders (every record present). Each is the command as a user types it,
writing the tables and report at the end (``--no-table``: the models only). A script, not a test.

    python tests/benchmarks/default_run.py                 # the whole zoo (about 5 minutes on 2 cores)
    python tests/benchmarks/default_run.py --models ae,random --protocols mlp,mine

Each command is a fresh ``repeval`` process on fresh folders under ``--root``; wall and CPU seconds
(the children's user + system time) and the host's ISA, load average and float32 GEMM rates
(before and after) are printed, with the ratio of the two wall times. Run it on an idle machine:
the load average before and after says whether it was; the GEMM rates say how fast the host ran
(a shared host's speed drifts by 10 % between runs).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_info, gemm_bound, load  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its workers, last stderr line) of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, (proc.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="default: every registered model")
    ap.add_argument("--protocols", help="default: every protocol")
    ap.add_argument("--root", type=Path, help="scratch folder (default: a new temporary folder)")
    ap.add_argument("--no-table", dest="tables", action="store_false",
                    help="time the models only (default: the command as typed, writing the tables and report)")
    a = ap.parse_args()
    root = a.root or Path(tempfile.mkdtemp(prefix="repeval-default-run-"))
    grid = [*(["--models", a.models] if a.models else []), *(["--protocols", a.protocols] if a.protocols else [])]

    def cmd(tag: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "repeval", "run", *grid, "--quiet", *([] if a.tables else ["--no-table"]),
                "--workdir", str(root / tag / "w"), "--results", str(root / tag / "r"), *extra]

    import torch
    print(f"cpu: {cpu_info()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads per process by default")
    print(f"grid: {a.models or 'every model'} x {a.protocols or 'every protocol'}, digits, quick preset, "
          f"{'tables and report written' if a.tables else '--no-table'}; "
          f"scratch {root}")
    print(f"load average before: {load()}; host GEMM rate before: {gemm_bound(1024, 'cpu')[1]} GFLOP/s")
    one = timed(cmd("one", "--jobs", "1"))
    default = timed(cmd("default"))
    again = timed(cmd("default"))
    print(f"load average after:  {load()}; host GEMM rate after: {gemm_bound(1024, 'cpu')[1]} GFLOP/s "
          "(this host's speed drifts: compare runs by their ratio, or at equal rates)")
    for name, (wall, cpu, last) in (("--jobs 1 (one process)", one), ("default (workers)", default),
                                     ("default, repeat", again)):
        print(f"{name:<24} {wall:7.1f} s wall {cpu:7.1f} s CPU   {last}")
    print(f"one process / default = {one[0] / default[0]:.2f}x (wall)")


if __name__ == "__main__":
    main()
