"""Benchmark (not a test): repeval's ``estimate_mi`` against a published MINE / InfoNCE on tasks with
known MI (Czyz et al., NeurIPS 2023 families, samples drawn here: tests/benchmarks/mi_tasks.py).

    nice -n 10 python tests/benchmarks/mi_benchmark.py [--n 10000] [--tasks a,b] [--bmi-python PATH]

The published implementations are the ``benchmark-mi`` package's (``bmi.estimators.MINEEstimator``
and ``InfoNCEEstimator``, their defaults). They are not a repeval dependency: they run in the Python
given by ``--bmi-python`` (default ``$REPEVAL_BMI_PYTHON``, else this interpreter), in a subprocess
on the very same samples (written to a temporary .npz), so the two never share an environment:
e.g. ``python -m venv /tmp/bmi && /tmp/bmi/bin/pip install benchmark-mi jax==0.4.23
jaxlib==0.4.23 'scipy<1.13'``. Without it the published columns are skipped with a message.

Prints one row per task: true MI, each estimate and |error|, seconds per call; then mean |error|,
worst |error|, lowest estimate, total and slowest seconds, the time and error ratios ours /
published, the CPU's ISA flags, and one timed ``neural_dependency`` call on n x 64 Gaussian codes
with known total correlation (``--ndm-dim``). Timings are wall-clock seconds of one call on this
machine as loaded now.
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mi_tasks import tasks  # noqa: E402

from repeval.protocols.mine import estimate_mi_details  # noqa: E402
from repeval.protocols.ndm import neural_dependency_details  # noqa: E402

BMI_RUNNER = r"""
import json, sys, time
import numpy as np
from bmi.estimators import InfoNCEEstimator, MINEEstimator
data = np.load(sys.argv[1])
names = json.loads(sys.argv[2])
which = json.loads(sys.argv[4])
out = {}
for name in names:
    x, y = data[name + "/x"], data[name + "/y"]
    for label, make in (("bmi_mine", MINEEstimator), ("bmi_infonce", InfoNCEEstimator)):
        if label[4:] not in which:
            continue
        est = make(verbose=False)
        t0 = time.perf_counter()
        v = float(est.estimate(x, y))
        out.setdefault(name, {})[label] = (v, time.perf_counter() - t0)
    print(name, out[name], file=sys.stderr, flush=True)
json.dump(out, open(sys.argv[3], "w"))
"""


def isa() -> str:
    try:
        flags = set(next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split())
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    return ", ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16"))


def bmi_python(arg: str | None) -> str | None:
    py = arg or os.environ.get("REPEVAL_BMI_PYTHON") or sys.executable
    try:
        ok = subprocess.run([py, "-c", "import bmi.estimators"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    if not ok:
        print(f"# published estimators skipped: `import bmi.estimators` fails in {py} "
              "(install benchmark-mi there, or pass --bmi-python)")
        return None
    return py


def run_published(py: str, samples: dict[str, tuple[np.ndarray, np.ndarray]], which: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        npz, out = Path(tmp) / "samples.npz", Path(tmp) / "out.json"
        np.savez(npz, **{f"{k}/{a}": v for k, (x, y) in samples.items() for a, v in (("x", x), ("y", y))})
        subprocess.run([py, "-c", BMI_RUNNER, str(npz), json.dumps(list(samples)), str(out),
                        json.dumps(which)], check=True)
        return json.loads(out.read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000, help="pairs per task")
    p.add_argument("--tasks", default="", help="comma-separated substrings of task names (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bmi-python", default=None)
    p.add_argument("--published", default="mine,infonce", help="published estimators to run: mine, infonce (or none)")
    p.add_argument("--ndm-dim", type=int, default=64, help="time one neural_dependency call at n x this (0: skip)")
    p.add_argument("--options", default="", help="estimate_mi options, e.g. 'estimator=infonce,steps=2000'")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    opts = {k: (type_guess(v)) for k, _, v in (o.partition("=") for o in args.options.split(",") if o)}
    chosen = [t for t in tasks() if not args.tasks or any(s in t.name for s in args.tasks.split(","))]
    samples = {t.name: tuple(a.astype(np.float32) for a in t.sample(args.n, args.seed)) for t in chosen}
    print(f"# CPU ISA: {isa()}; torch threads {args.threads}; {args.n} pairs per task; options {opts or 'defaults'}")
    py = bmi_python(args.bmi_python) if args.published != "none" else None
    pub = {}
    if py:
        t0 = time.perf_counter()
        pub = run_published(py, samples, args.published.split(","))
        print(f"# published estimators: {time.perf_counter() - t0:.0f} s in {py}")
    rows = []
    for t in chosen:
        x, y = samples[t.name]
        t0 = time.perf_counter()
        r = estimate_mi_details(x, y, seed=args.seed, **opts)
        row = {"task": t.name, "true": t.mi, "ours": r["mi"], "ours_bound": r["mi_bound"], "se": r["mi_stderr"],
               "ours_s": time.perf_counter() - t0, "conv": r["converged"], "steps": r["steps_used"]}
        for label, (v, s) in pub.get(t.name, {}).items():
            row[label], row[label + "_s"] = v, s
        rows.append(row)
        print("# " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
    report(rows, ["ours"] + [c for c in ("bmi_mine", "bmi_infonce") if all(c in r for r in rows)])
    if args.ndm_dim:
        ndm_timing(args.n, args.ndm_dim, args.seed)


def ndm_timing(n: int, d: int, seed: int, rho: float = 0.1) -> None:
    """One ``neural_dependency`` call on n x d Gaussian codes, every correlation ``rho``; their total
    correlation is -1/2 log det R (the sum of the marginal entropies minus the joint's)."""
    cov = (1 - rho) * np.eye(d) + rho * np.ones((d, d))
    z = np.random.default_rng(seed).multivariate_normal(np.zeros(d), cov, size=n).astype(np.float32)
    t0 = time.perf_counter()
    r = neural_dependency_details(z, seed=seed)
    print(f"ndm: neural_dependency on {n} x {d} Gaussian codes (correlation {rho}, total correlation "
          f"{-0.5 * np.linalg.slogdet(cov)[1]:.3f} nats): {r['ndm']:.3f} (se {r['ndm_stderr']:.3f}, "
          f"converged {r['ndm_converged']:.0f}, {r['ndm_steps_used']:.0f} steps) in {time.perf_counter() - t0:.1f} s")


def type_guess(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def report(rows: list[dict], cols: list[str]) -> None:
    head = "| task | true MI | " + " | ".join(f"{c} | abs err | s" for c in cols) + " |"
    print("\n" + head + "\n|" + "---|" * (2 + 3 * len(cols)))
    for r in rows:
        cells = " | ".join(f"{r[c]:.3f} | {abs(r[c] - r['true']):.3f} | {r[c + '_s']:.1f}" for c in cols)
        print(f"| {r['task']} | {r['true']:.3f} | {cells} |")
    err = {c: np.array([abs(r[c] - r["true"]) for r in rows]) for c in cols}
    secs = {c: sum(r[c + "_s"] for r in rows) for c in cols}
    print(f"| **mean abs err / total s** | | " + " | ".join(f"| **{err[c].mean():.3f}** | {secs[c]:.0f}" for c in cols) + " |")
    print()
    for c in cols:
        low = min(r[c] for r in rows)
        slowest = max(r[c + "_s"] for r in rows)
        print(f"{c}: mean |err| {err[c].mean():.3f}, worst |err| {err[c].max():.3f}, lowest estimate {low:.3f}, "
              f"{secs[c]:.0f} s total, {secs[c] / len(rows):.1f} s per call, slowest {slowest:.1f} s")
    print(f"ours: lowest raw held-out bound {min(r['ours_bound'] for r in rows):.3f}; "
          f"converged {sum(r['conv'] == 1 for r in rows)}/{len(rows)}")
    for c in cols[1:]:
        print(f"ratio ours / {c}: mean |err| {err['ours'].mean() / err[c].mean():.2f}, time {secs['ours'] / secs[c]:.2f}")


if __name__ == "__main__":
    main()
