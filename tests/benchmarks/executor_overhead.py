"""Benchmark: wall time of the digits grid inline vs ``--executor local --jobs N``, and the cost of a
shard (a script, not a test; needs submitit).

    python tests/benchmarks/executor_overhead.py                   # ae, dim-l-infonce, random x mlp, ndm
    python tests/benchmarks/executor_overhead.py --jobs 2 --models ae,random --protocols mlp
    # on a GPU host: two models on cifar10-jpeg, one worker on cuda:0, per-model throughput
    python tests/benchmarks/executor_overhead.py --dataset npz:../shared/data/cifar10-jpeg --preset cpu \
        --models dim-l-infonce,ae --protocols mlp --device cuda --devices cuda:0 --jobs 1 --set mlp.epochs=1

Four ``repeval run`` commands, each a fresh process on fresh folders under ``--root``:

1. inline (``--jobs 1``), the whole grid;     2. ``--executor local --jobs N``, the whole grid;
3. inline again on 1's folders (every record present: nothing computed);
4. local again on 2's folders (every shard starts, loads, finds its records present, ends).

(4 - 3) / number of shards is the overhead of a shard: a submitit job, a Python process importing
torch and repeval, the dataset loaded once more. Records of 1 and 2 are compared (timings,
creation time, provenance aside): with the same torch thread count they are identical. Wall times
depend on what else runs on the machine: the load average is printed before and after. Per model,
the local run's records give its training throughput (training images x epochs / training seconds)
and its extraction time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import cpu_info, load  # noqa: E402


def records(results: Path) -> dict:
    out = {}
    for p in sorted(results.rglob("*.json")):
        r = json.loads(p.read_text())
        for k in ("timing_s", "created", "provenance"):
            r.pop(k, None)
        out[str(p.relative_to(results))] = r
    return out


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ae,dim-l-infonce,random")
    ap.add_argument("--protocols", default="mlp,ndm")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--device", default="cpu", help="the inline run's device")
    ap.add_argument("--devices", help="the local workers' devices (default: --device)")
    ap.add_argument("--set", action="append", help="budget overrides passed to repeval run (default: "
                    "train.max_train=512 mlp.epochs=2 ndm.steps=10, a small quick-preset grid)")
    ap.add_argument("--root", type=Path, help="scratch folder (default: a new temporary folder)")
    a = ap.parse_args()
    a.set = a.set or ["train.max_train=512", "mlp.epochs=2", "ndm.steps=10"]
    root = a.root or Path(tempfile.mkdtemp(prefix="repeval-executor-bench-"))
    n = len(a.models.split(","))

    def cmd(tag: str, *extra: str) -> list[str]:
        sets = [x for s in a.set for x in ("--set", s)]
        return [sys.executable, "-m", "repeval", "run", "--models", a.models, "--protocols", a.protocols,
                "--dataset", a.dataset, "--preset", a.preset, "--device", a.device, "--quiet", "--no-table",
                "--workdir", str(root / tag / "w"), "--results", str(root / tag / "r"), *sets, *extra]

    local = ("--executor", "local", "--jobs", str(a.jobs), "--devices", a.devices or a.device)
    print(f"cpu: {cpu_info()}, {os.cpu_count()} logical cores, torch threads per process: default")
    print(f"grid: {n} models ({a.models}) x protocols {a.protocols} on {a.dataset}, {a.preset} preset, "
          f"--set {' '.join(a.set)}; inline on {a.device}, local on {a.devices or a.device}")
    print(f"load average before: {load()}")
    t_inline = timed(cmd("inline", "--jobs", "1"))
    t_local = timed(cmd("local", *local))
    t_inline0 = timed(cmd("inline", "--jobs", "1"))
    t_local0 = timed(cmd("local", *local))
    print(f"load average after:  {load()}")
    same = records(root / "inline" / "r") == records(root / "local" / "r")
    print(f"records identical inline vs local: {same} ({len(records(root / 'inline' / 'r'))} records)")
    print(f"inline:              {t_inline:7.1f} s")
    print(f"local --jobs {a.jobs}:     {t_local:7.1f} s   (inline / local = {t_inline / t_local:.2f}x)")
    print(f"nothing to do, inline: {t_inline0:5.1f} s; local: {t_local0:5.1f} s "
          f"-> overhead per shard {(t_local0 - t_inline0) / n:.1f} s (wall, {a.jobs} at a time)")
    from repeval.data import load_dataset
    n_train = load_dataset(a.dataset).x_train.shape[0]
    seen = {}
    for r in records(root / "local" / "r").values():
        seen.setdefault(r["model"], r)
    for model, r in seen.items():
        t = json.loads((root / "local" / "r" / r["dataset"] / "records" / model / r["protocol"]
                        / f"{r['tap']}-seed{r['seed']}.json").read_text())["timing_s"]
        tr = r["config"]["train"]
        images = min(tr["max_train"] or n_train, n_train) * tr["epochs"] if tr else 0
        rate = f"{images / t['train']:.0f} img/s" if images and t["train"] else "not trained"
        print(f"  {model:<16} train {t['train']:7.1f} s ({rate}), extract {t['extract']:6.1f} s")


if __name__ == "__main__":
    main()
