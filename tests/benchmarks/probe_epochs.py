"""Benchmark: the non-linear probe's test accuracy against epochs of probe training, and its cost
(a script, not a test).

    python tests/benchmarks/probe_epochs.py --data npz:../shared/data/cifar10-jpeg
    python tests/benchmarks/probe_epochs.py --data npz:DIR --features TRAIN.pt,TEST.pt   # any encoder
    python tests/benchmarks/probe_epochs.py                     # synthetic features of the same size

For each tap and each budget in ``--epochs`` the probe (protocol ``mlp`` with the ``--preset``'s
config, ``epochs`` replaced by the budget) is trained from scratch with ``--seeds`` seeds; a budget
is a whole schedule (the cosine decay spans it), so accuracy after E epochs of an E-epoch run is
what a preset with ``mlp.epochs=E`` records. Printed per (tap, budget): final test accuracy (mean
+- std over seeds), the convergence diagnostic (``gain_over_half_budget``, ``converged``: the half
budget's run is reused when it is one of the budgets, else trained), train
accuracy, and seconds per epoch (training plus the test evaluations the rule needs; wall and
process CPU seconds, the latter summed over threads, which a loaded machine inflates less); then the
within-run test-accuracy curve of the largest budget. Features: the random-init shared encoder
(as tests/benchmarks/protocols.py builds them), the runner's feature-cache files of any encoder
(``--features``: dicts of flattened taps for the train and test split), or synthetic ones. The CPU's
ISA and the ``uptime`` load are printed: compare ratios, not absolute seconds, across hosts.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocols import load_features  # noqa: E402  (sibling benchmark script)
from train_throughput import cpu_info  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="npz:DIR (labels; random-init encoder features unless --features)")
    p.add_argument("--cache", default="/tmp/repeval_bench_features.pt", help="random-init feature cache ('' = none)")
    p.add_argument("--features", help="TRAIN.pt,TEST.pt: feature-cache dicts {tap: (N, D)} of an encoder")
    p.add_argument("--label", default="", help="what the features are, printed with the results")
    p.add_argument("--preset", default="", help="take the mlp section of this preset (default: MLPConfig's defaults)")
    p.add_argument("--taps", default="conv,fc,y")
    p.add_argument("--epochs", default="5,10,20,40", help="probe budgets (each a full schedule)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override an mlp config value")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    import repeval
    repeval.load_builtins()
    from repeval.config import make_config
    from repeval.engine.presets import PRESETS
    from repeval.protocols.mlp import MLPConfig, half_budget, probe_metrics, train_probe

    section = PRESETS.get(args.preset).section("mlp") if args.preset else {}
    over = {**section, **dict(kv.split("=", 1) for kv in args.set)}
    base = make_config(MLPConfig, over, "mlp")
    print(f"# probe epochs benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu {cpu_info()}, preset {args.preset or '(none)'}")
    print(f"# load before: {os.getloadavg()}")
    ftr, fte, ytr, yte, _, _, desc = load_features(args)
    if args.features:
        a, b = args.features.split(",")
        ftr, fte = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        desc = f"feature cache {a}, {b}"
    print(f"# features: {args.label or desc}; " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in ftr.items()))
    budgets = [int(e) for e in args.epochs.split(",")]
    rows = []
    for tap in [t.strip() for t in args.taps.split(",") if t.strip()]:
        xtr, xte = ftr[tap].float(), fte[tap].float()
        curve, final = {}, {}
        for e in budgets:
            cfg = replace(base, epochs=e)
            ms, secs, cpus = [], [], []
            for s in range(args.seeds):
                t, c = time.time(), time.process_time()
                fit = train_probe(xtr, ytr, xte, yte, 10, cfg, seed=s, curve=(e == max(budgets) and s == 0))
                secs.append((time.time() - t) / e)
                cpus.append((time.process_time() - c) / e)
                final[e, s] = fit.test_curve[e]
                h = half_budget(cfg)
                if (e // 2, s) not in final:
                    final[e // 2, s] = (train_probe(xtr, ytr, xte, yte, 10, h, seed=s).test_curve[h.epochs]
                                        if h else fit.test_curve[0])
                ms.append(probe_metrics(fit, final[e // 2, s], xtr, ytr, cfg))
                if len(fit.test_curve) == e + 1:
                    curve = fit.test_curve
            acc = np.array([m["accuracy"] for m in ms])
            rows.append((tap, e, acc.mean(), acc.std(), np.mean([m["gain_over_half_budget"] for m in ms]),
                         sum(bool(m["converged"]) for m in ms), np.mean([m["train_accuracy"] for m in ms]),
                         np.mean(secs), np.mean(cpus)))
            print(f"{tap:>4} {e:>3} epochs: test {acc.mean():.2f} +- {acc.std():.2f} %  gain over half budget "
                  f"{rows[-1][4]:+.2f}  converged {rows[-1][5]}/{args.seeds}  train {rows[-1][6]:.1f} %  "
                  f"{rows[-1][7]:.2f} s/epoch wall, {rows[-1][8]:.2f} CPU s/epoch", flush=True)
        if curve:
            print(f"{tap:>4} within the {max(budgets)}-epoch run (seed 0), test accuracy by epoch: "
                  + " ".join(f"{k}:{v:.1f}" for k, v in sorted(curve.items())), flush=True)
    print(f"\n# load after: {os.getloadavg()}")
    print(f"# config: {base} (epochs replaced by the budget)")
    print("| tap | probe epochs | test accuracy % | gain over half budget | converged | train accuracy % "
          "| wall s/epoch | CPU s/epoch |\n|---|---|---|---|---|---|---|---|")
    for tap, e, m, sd, g, c, tr, sec, cpu in rows:
        print(f"| {tap} | {e} | {m:.2f} +- {sd:.2f} | {g:+.2f} | {c}/{args.seeds} | {tr:.1f} | {sec:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
