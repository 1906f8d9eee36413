"""Benchmark: ``repeval validate --quick`` in one process against one worker process per check slot
(a script, not a test).

    python tests/benchmarks/validate_quick.py              # --jobs 1, then the default (one per core)
    python tests/benchmarks/validate_quick.py --jobs 2 --rounds 2

Each round runs both settings in this process's order (one, then several workers) on fresh folders,
prints their wall seconds and the ratio, and checks that every check's rows are identical (each
worker keeps this process's torch thread count). The MI critics run on one thread each, so a single
process leaves the other cores idle; the ratio says how much of that the workers recover. Wall
times depend on what else runs: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_info, load  # noqa: E402

from repeval.plugin.discovery import load_builtins  # noqa: E402
from repeval.validation import quick_config, run_validation  # noqa: E402
from repeval.validation.run import default_jobs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, help="worker processes (default: one per CPU core)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    load_builtins()
    cfg = quick_config()
    jobs = args.jobs or default_jobs("cpu", len(cfg.checks))
    print(f"# CPU: {cpu_info()} | load before {load()} | checks {', '.join(cfg.checks)}")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            seconds, rows = {}, {}
            for n in (1, jobs):
                out = Path(tmp) / f"r{r}-jobs{n}"
                t0 = time.perf_counter()
                run_validation(cfg, out, mode="quick", quiet=True, jobs=n)
                seconds[n] = time.perf_counter() - t0
                summary = json.loads((out / "summary.json").read_text())
                rows[n] = {k: c["rows"] for k, c in summary["checks"].items()}
            same = rows[1] == rows[jobs]
            print(f"round {r}: jobs 1 {seconds[1]:.1f} s | jobs {jobs} {seconds[jobs]:.1f} s | "
                  f"ratio {seconds[1] / seconds[jobs]:.2f}x | rows identical: {same}")
    print(f"# load after {load()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
