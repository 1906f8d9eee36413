"""Benchmark: one encoder's whole evaluation (every protocol, every tap and seed of a preset), each
protocol's seconds beside its floating-point work over this host's GEMM rate and beside the closest
scikit-learn estimator on the same features (a script, not a test).

    python tests/benchmarks/encoder_eval.py --data npz:../shared/data/cifar10-jpeg   # Random init, curve budgets
    python tests/benchmarks/encoder_eval.py --data digits --preset quick

Prints the CPU (model, vector ISA: avx2 / avx512f / avx512_bf16), torch's threads and the load
average before and after, then:

- the GEMM bound: the best of 3 float32 products 2,048 x 2,048 x 2,048 (GFLOP/s), measured first;
- per protocol: seconds for all of its records (taps x seeds, as ``repeval run`` computes them: a
  protocol registered with ``batch``, e.g. mlp, computes a tap's seeds in one call),
  the floating-point operations of its matrix products (:func:`gemm_flops`, from the configuration
  and the steps and evaluations its records report), the seconds those would take at the GEMM
  bound, and the fraction of the bound reached (1.0 = every second spent in products at the
  measured peak; the bound is a square product's rate, which skinny products cannot reach);
- scikit-learn's nearest equivalents fitted once on the same standardised features of the widest
  tap (``LogisticRegression`` lbfgs at our chosen weight decay for ``linear``, ``LinearSVC`` hinge
  at our chosen C for ``svm``, ``KNeighborsClassifier`` brute force for ``knn``), with their
  seconds, the whole protocol's scikit-learn cost (one fit x the fits our protocol makes) and the
  ratio to ours.

Features are the taps of the shared encoder at its seeded random initialisation (the ``random``
model), cached in ``--cache``. Time it on an otherwise idle machine: the load is printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def cpu_line() -> str:
    """Model name, the vector ISA that decides GEMM speed (:func:`repeval.store.provenance.cpu_isa`),
    cores, torch and its threads."""
    from repeval.store.provenance import cpu_isa
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
                 platform.processor() or "?")
    return f"{model}; ISA {cpu_isa()}; {os.cpu_count()} CPUs, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def gemm_flops(name: str, cfg, results: list[dict], dims: list[int], n_tr: int, n_te: int, k: int) -> float | None:
    """Floating-point operations of a protocol's matrix products, from its configuration and what
    its records report (steps, evaluations): 2 m n k per product; backward = 2 x forward for the
    weight gradient only (the features need none). ``results`` in the order of ``dims`` x seeds.
    None for protocols whose work is not modelled (convolutions and small critics)."""
    seeds = len(results) // len(dims)
    total = 0.0
    for j, r in enumerate(results):
        d = dims[j // seeds]
        if name == "mlp":        # E + E // 2 epochs (the budget-halving check), layer 1 forward + weight gradient
            epochs = cfg.epochs + cfg.epochs // 2
            total += 4.0 * n_tr * d * cfg.hidden * epochs + 2.0 * n_te * d * cfg.hidden * (min(cfg.average_last, cfg.epochs) + 2)
        elif name == "svm":      # scores + G^T X per step, |grid| (selection) or 1 (refit) models of k classes
            m = len(cfg.c_grid)
            total += 4.0 * cfg.batch_size * d * k * (m * r["select_steps"] + r["steps"])
        elif name == "linear":   # logits + G^T X over all rows per evaluation
            total += 4.0 * n_tr * d * k * r["evaluations"]
        elif name == "knn":      # the test x train similarity matrix
            total += 2.0 * n_tr * n_te * d
        else:
            return None
    return total


def encoder_features(spec: str, cache: Path):
    """(dataset, train taps, test taps) of the random-init shared encoder, cached."""
    from repeval.data import load_dataset
    from repeval.engine.features import extract
    from repeval.estimators.nets import SharedEncoder
    from repeval.seeding import derive_seed, seed_everything
    ds = load_dataset(spec)
    if cache.exists():
        ftr, fte = torch.load(cache, weights_only=True)
    else:
        seed_everything(derive_seed(0, "init", "random"))      # as the runner builds `random`
        enc = SharedEncoder(ds.x_train.shape[1])
        ftr, fte = extract(enc, ds.x_train), extract(enc, ds.x_test)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save((ftr, fte), cache)
    return ds, ftr, fte


def sklearn_reference(name: str, results: list[dict], xtr, ytr, xte, yte) -> tuple[str, float, int] | None:
    """(description, seconds of one fit, fits our protocol makes) of scikit-learn's nearest
    estimator on standardised features, at the hyper-parameter our protocol chose (first record)."""
    from sklearn.exceptions import ConvergenceWarning
    from repeval.estimators.zscore import zscore
    a, b = (t.numpy() for t in zscore(xtr, xte))
    r = results[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if name == "linear":
            from sklearn.linear_model import LogisticRegression
            wd = r["weight_decay"]
            clf = LogisticRegression(C=1.0 / (wd * a.shape[0]), max_iter=200, tol=1e-4)
            fits = int(r["path_fits"]) + 1
            desc = f"LogisticRegression(lbfgs, C=1/(wd n), wd={wd:g}, max_iter=200)"
        elif name == "svm":
            from sklearn.svm import LinearSVC
            clf = LinearSVC(C=r["c"], loss="hinge", max_iter=1000, random_state=0)
            fits = len([k for k in r if k.startswith("val_accuracy_c")]) + 1
            desc = f"LinearSVC(hinge, C={r['c']:g}, max_iter=1000)"
        elif name == "knn":
            from sklearn.neighbors import KNeighborsClassifier
            clf = KNeighborsClassifier(n_neighbors=20, algorithm="brute")
            fits, desc = 1, "KNeighborsClassifier(k=20, brute)"
        else:
            return None
        t = time.perf_counter()
        clf.fit(a, ytr.numpy())
        acc = 100.0 * float((clf.predict(b) == yte.numpy()).mean())
        sec = time.perf_counter() - t
    return f"{desc}: test {acc:.2f} %", sec, fits


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", help="dataset spec (digits, npz:DIR, ...)")
    p.add_argument("--preset", default="curve")
    p.add_argument("--protocols", default="mlp,svm,linear,knn,recon,mine,ndm")
    p.add_argument("--cache", default="", help="feature cache file (default: under /tmp, per dataset)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-sklearn", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    import repeval
    repeval.load_builtins()
    from repeval.config import make_config
    from repeval.engine.presets import PRESETS
    from repeval.plugin.protocol import ProtocolInput, Split, code_tap
    from repeval.registry import PROTOCOLS
    from repeval.seeding import derive_seed, seed_everything

    from repeval.estimators.optim import fused_adam
    fused_adam([torch.zeros(1, requires_grad=True)], 1e-3)   # one-time imports out of the first protocol's time
    print(f"# {cpu_line()}")
    print(f"# load before: {tuple(round(v, 2) for v in os.getloadavg())}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_throughput import gemm_bound
    rate, each = gemm_bound(2048, "cpu")
    print(f"# GEMM bound: {rate:.0f} GFLOP/s (float32, 4096x2048x2048, the best of {each} GFLOP/s)")
    cache = Path(args.cache or f"/tmp/repeval_bench/{args.data.replace('/', '_').replace(':', '_')}.pt")
    t = time.perf_counter()
    ds, ftr, fte = encoder_features(args.data, cache)
    print(f"# features: {ds.name}, random-init shared encoder, "
          + ", ".join(f"{k} {tuple(v.shape)}" for k, v in ftr.items()) + f" ({time.perf_counter() - t:.0f} s)")
    preset = PRESETS.get(args.preset)
    rows, total = [], 0.0
    for name in [s.strip() for s in args.protocols.split(",") if s.strip()]:
        spec = PROTOCOLS.get(name)
        cfg = make_config(spec.config_cls, preset.section(name), name)
        taps = list(ftr) if spec.taps == "all" else [code_tap(list(ftr))]
        imgs = spec.needs_images

        def run_all(spec=spec, cfg=cfg, taps=taps, imgs=imgs):
            out = []
            for tap in taps:
                inp = ProtocolInput(tap, Split(ftr[tap], ds.y_train, ds.x_train if imgs else None),
                                    Split(fte[tap], ds.y_test, ds.x_test if imgs else None), ds.n_classes)
                if spec.batch is not None:   # as the runner calls it: every seed of the tap in one call
                    seed_everything(derive_seed(0, spec.name, tap))
                    out.extend(spec.batch(inp, cfg, seeds=tuple(range(spec.seeds)), device="cpu"))
                    continue
                for seed in range(spec.seeds):
                    seed_everything(derive_seed(seed, spec.name, tap))
                    out.append(spec.fn(inp, cfg, seed=seed, device="cpu"))
            return out
        t = time.perf_counter()
        results = run_all()
        sec = time.perf_counter() - t
        total += sec
        flops = gemm_flops(name, cfg, results, [ftr[t].shape[1] for t in taps], ftr[taps[0]].shape[0],
                           fte[taps[0]].shape[0], ds.n_classes)
        line = f"{name:>6}: {sec:7.1f} s for {len(results)} records; "
        if flops is None:
            frac = None
            line += "work not modelled (convolutions / small critics)"
        else:
            frac = flops / 1e9 / rate / sec
            line += (f"{flops / 1e12:7.2f} TFLOP in products = {flops / 1e9 / rate:6.1f} s at the bound "
                     f"({frac:.2f} of it)")
        ref = None if args.no_sklearn else sklearn_reference(name, results, ftr[taps[0]], ds.y_train,
                                                             fte[taps[0]], ds.y_test)
        if ref:
            desc, one, fits = ref
            n_rec = spec.seeds
            ours = sec * (ftr[taps[0]].shape[1] / sum(ftr[t].shape[1] for t in taps))   # rough share of the widest tap
            line += (f"\n        scikit-learn on {taps[0]}: {desc}, {one:.1f} s per fit; x {fits} fits x {n_rec} "
                     f"seed(s) = {one * fits * n_rec:.0f} s vs ours ~{ours:.0f} s on that tap "
                     f"(ratio {one * fits * n_rec / max(ours, 1e-9):.1f}x)")
        print(line, flush=True)
        rows.append((name, sec, flops, frac))
    print(f"# load after: {tuple(round(v, 2) for v in os.getloadavg())}")
    print(f"# total protocols: {total:.0f} s")
    print("| protocol | seconds | TFLOP | fraction of GEMM bound |\n|---|---|---|---|")
    for name, sec, flops, frac in rows:
        print(f"| {name} | {sec:.1f} | " + ("- | - |" if flops is None else f"{flops / 1e12:.2f} | {frac:.2f} |"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
