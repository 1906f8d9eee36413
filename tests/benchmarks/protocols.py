"""Benchmark: seconds per evaluation protocol on cifar10-size features, and the SVM against
scikit-learn's LinearSVC on the same features (a script, not a test).

    python tests/benchmarks/protocols.py --data npz:../shared/data/cifar10-jpeg
    python tests/benchmarks/protocols.py                      # synthetic features of the same size

Features are the taps of the shared encoder at its seeded random initialisation (the ``random``
model: conv 4,096, fc 1,024, y 64) on 50,000 train / 10,000 test images, or synthetic
class-structured features of the same shapes. Each protocol runs with the ``--preset`` config
(default ``cpu``) except where a cheaper budget is stated in the output: long protocols are
timed on a stated number of epochs/steps (and images) and extrapolated linearly to the preset's
budget, marked "extrapolated" (training time scaled by epochs/steps/images, plus the measured
evaluation time). The SVM runs its whole protocol (``--svm-seeds`` seeds, the C
grid, selection + refit) on the conv tap; LinearSVC(loss='hinge') is fitted once per C in
``--sklearn-c`` with ``--sklearn-max-iter`` on ``--sklearn-subset`` training rows (0 = all), and
its whole-protocol time is estimated as (mean fit time) x (|C grid| + 1 refit) x seeds. The
``uptime`` load is printed: other processes share the CPU.
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


def load_features(args) -> tuple[dict, dict, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, str]:
    """(train taps, test taps, y_train, y_test, x_train images, x_test images, description)."""
    from repeval.seeding import derive_seed, generator, seed_everything
    if args.data:
        from repeval.data import load_dataset
        from repeval.engine.features import extract
        from repeval.estimators.nets import SharedEncoder
        ds = load_dataset(args.data)
        cache = Path(args.cache) if args.cache else None
        if cache and cache.exists():
            ftr, fte = torch.load(cache)
            how = f"cached {cache}"
        else:
            seed_everything(derive_seed(0, "init", "random"))      # as the runner builds `random`
            enc = SharedEncoder(ds.x_train.shape[1])
            t = time.time()
            ftr = extract(enc, ds.x_train)
            fte = extract(enc, ds.x_test)
            how = f"extracted in {time.time() - t:.0f} s"
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save((ftr, fte), cache)
        return ftr, fte, ds.y_train, ds.y_test, ds.x_train, ds.x_test, \
            f"{ds.name}: random-init shared encoder features ({how})"
    g = generator(0)
    n_tr, n_te = 50000, 10000
    y = torch.randint(10, (n_tr + n_te,), generator=g)
    taps = {}
    for name, d in (("conv", 4096), ("fc", 1024), ("y", 64)):
        centres = torch.randn(10, d, generator=g) * (0.05 if d > 64 else 0.4)
        taps[name] = (centres[y] + torch.randn(n_tr + n_te, d, generator=g)).relu_() if name != "y" \
            else centres[y] + torch.randn(n_tr + n_te, d, generator=g)
    imgs = torch.rand(n_tr + n_te, 3, 32, 32, generator=g) * 2 - 1
    ftr = {k: v[:n_tr] for k, v in taps.items()}
    fte = {k: v[n_tr:] for k, v in taps.items()}
    return ftr, fte, y[:n_tr], y[n_tr:], imgs[:n_tr], imgs[n_tr:], "synthetic class-structured features"


def make_input(ftr, fte, ytr, yte, tap, imgs=None, n_train=0):
    from repeval.plugin.protocol import ProtocolInput, Split
    xi_tr, xi_te = imgs if imgs else (None, None)
    n = n_train or ftr[tap].shape[0]
    return ProtocolInput(tap, Split(ftr[tap][:n], ytr[:n], None if xi_tr is None else xi_tr[:n]),
                         Split(fte[tap], yte, xi_te), 10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="npz:DIR (random-init encoder features); default synthetic features")
    p.add_argument("--cache", default="/tmp/repeval_bench_features.pt", help="feature cache file ('' = none)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--protocols", default="svm,mlp,recon,mine,ndm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--svm-seeds", type=int, default=5)
    p.add_argument("--sklearn-c", default="0.01", help="comma list of C for the LinearSVC reference fits")
    p.add_argument("--sklearn-max-iter", type=int, default=1000)
    p.add_argument("--sklearn-subset", type=int, default=0, help="training rows for LinearSVC (0 = all 50,000)")
    p.add_argument("--sklearn-taps", default="conv,y")
    p.add_argument("--mlp-epochs", type=int, default=1, help="epochs timed per tap (extrapolated to the preset)")
    p.add_argument("--recon-images", type=int, default=5000, help="training images for the timed recon epoch")
    p.add_argument("--mine-steps", type=int, default=100)
    p.add_argument("--ndm-steps", type=int, default=50)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    import repeval
    repeval.load_builtins()
    from repeval.config import make_config
    from repeval.engine.presets import PRESETS
    from repeval.registry import PROTOCOLS

    preset = PRESETS.get(args.preset)
    print(f"# protocol benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"preset {preset.name}")
    print(f"# load before: {os.getloadavg()}")
    ftr, fte, ytr, yte, itr, ite, desc = load_features(args)
    print(f"# features: {desc}; " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in ftr.items()))
    todo = [s.strip() for s in args.protocols.split(",") if s.strip()]

    def cfg_of(name, **over):
        spec = PROTOCOLS.get(name)
        base = make_config(spec.config_cls, preset.section(name), name)
        return spec, replace(base, **over) if over else base

    rows = []
    if "svm" in todo:
        spec, cfg = cfg_of("svm")
        print(f"\n## svm  config {cfg}")
        for tap in ("conv", "fc", "y"):
            seeds = args.svm_seeds if tap == "conv" else 1
            inp = make_input(ftr, fte, ytr, yte, tap)
            t = time.time()
            accs, cs, norms, cycles, conv, degen = [], [], [], [], 0, 0
            for s in range(seeds):
                r = spec.fn(inp, cfg, seed=s, device="cpu")
                accs.append(r["accuracy"])
                cs.append(r["c"])
                norms.append(r["weight_norm"])
                cycles.append(r["cycles"])
                conv += bool(r["converged"])
                degen += bool(r["degenerate"])
            dt = time.time() - t
            print(f"svm {tap:>4}: {seeds} seed(s) in {dt:.1f} s ({dt / seeds:.1f} s/seed); accuracy "
                  f"{np.mean(accs):.2f} +- {np.std(accs):.2f} %, chosen C {cs}; converged {conv}/{seeds}, "
                  f"degenerate {degen}/{seeds}, |W| {np.mean(norms):.3g}, cycles {cycles}")
            rows.append(("svm", tap, dt, f"{seeds} seeds, whole protocol"))
            if tap in args.sklearn_taps.split(","):
                ref = run_sklearn(ftr[tap], ytr, fte[tap], yte, args)
                fits = len(cfg.c_grid) + 1
                mean_fit = float(np.mean([r[1] for r in ref]))
                est = mean_fit * fits * seeds
                for c, sec, acc, conv in ref:
                    print(f"  LinearSVC(loss='hinge', C={c:g}, max_iter={args.sklearn_max_iter}) on "
                          f"{args.sklearn_subset or ftr[tap].shape[0]} rows: {sec:.1f} s, test accuracy "
                          f"{acc:.2f} %, {'converged' if conv else 'NOT converged'}")
                print(f"  sklearn whole-protocol estimate: {mean_fit:.1f} s/fit x {fits} fits x {seeds} seeds "
                      f"= {est:.0f} s; ours {dt:.1f} s; ratio {est / dt:.1f}x; accuracy ours "
                      f"{np.mean(accs):.2f} vs sklearn best {max(r[2] for r in ref):.2f}")
    if "mlp" in todo:
        spec, cfg = cfg_of("mlp")
        timed = replace(cfg, epochs=args.mlp_epochs, milestones=(), average_last=1)
        print(f"\n## mlp  preset config {cfg}; timed {args.mlp_epochs} epoch(s)")
        for tap in ("conv", "fc", "y"):
            t = time.time()
            r = spec.fn(make_input(ftr, fte, ytr, yte, tap), timed, seed=0, device="cpu")
            dt = time.time() - t
            full = dt * cfg.epochs / args.mlp_epochs
            print(f"mlp {tap:>4}: {dt:.1f} s for {args.mlp_epochs} epoch(s) (accuracy {r['accuracy']:.2f} %); "
                  f"preset {cfg.epochs} epochs extrapolated {full:.0f} s")
            rows.append(("mlp", tap, full, "extrapolated"))
    if "recon" in todo:
        from repeval.protocols.recon import ms_ssim, reconstruct, ssim, train_decoder
        spec, cfg = cfg_of("recon")
        n = min(args.recon_images, ftr["y"].shape[0])
        print(f"\n## recon  preset config {cfg}; timed 1 training epoch on {n} images + test evaluation")
        z_tr, z_te = ftr["y"][:n], fte["y"]
        mu, sd = z_tr.mean(0), z_tr.std(0).clamp_min(1e-8)
        t = time.time()
        dec, loss = train_decoder((z_tr - mu) / sd, itr[:n], replace(cfg, epochs=1), seed=0)
        t_train = time.time() - t
        t = time.time()
        rec = reconstruct(dec, (z_te - mu) / sd)
        m = {"mse": float(((rec - ite) ** 2).mean()), "ssim": float(ssim(rec, ite).mean()),
             "ms_ssim": float(ms_ssim(rec, ite).mean())}
        t_eval = time.time() - t
        full = t_train * cfg.epochs * ftr["y"].shape[0] / n + t_eval
        print(f"recon y: train {t_train:.1f} s ({n / t_train:.0f} img/s), test evaluation {t_eval:.1f} s "
              f"({ite.shape[0]} images); after 1 epoch on {n}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
              + f"; preset {cfg.epochs} epochs on {ftr['y'].shape[0]} images extrapolated {full:.0f} s")
        rows.append(("recon", "y", full, "extrapolated"))
    if "mine" in todo:
        from repeval.estimators.mi import mine_fit_evaluate
        spec, cfg = cfg_of("mine")
        steps = min(args.mine_steps, cfg.steps)
        print(f"\n## mine  preset config {cfg}; timed with the cap at {steps} steps (stop rule on)")
        t = time.time()
        r = mine_fit_evaluate(itr, ftr["y"], ite, fte["y"], replace(cfg, steps=steps), seed=0)
        t_run = time.time() - t
        full = t_run * cfg.steps / r["steps_used"] if not r["converged"] else t_run
        print(f"mine y: {t_run:.1f} s for {r['steps_used']:.0f} steps (converged {r['converged']:.0f}), "
              f"held-out bound {r['bound']:.4f}; at most {full:.0f} s with the preset cap of {cfg.steps} steps")
        rows.append(("mine", "y", full, "measured" if r["converged"] else "upper bound, extrapolated"))
    if "ndm" in todo:
        from repeval.estimators.mi import ndm_fit_score
        spec, cfg = cfg_of("ndm")
        steps = min(args.ndm_steps, cfg.steps)
        print(f"\n## ndm  preset config {cfg}; timed with the cap at {steps} steps on sigmoid(y) (stop rule on)")
        z_tr, z_te = torch.sigmoid(ftr["y"]), torch.sigmoid(fte["y"])
        t = time.time()
        r = ndm_fit_score(z_tr, z_te, replace(cfg, steps=steps), seed=0)
        t_run = time.time() - t
        full = 2 * (t_run * cfg.steps / r["steps_used"] if not r["converged"] else t_run)   # z-scored and raw
        print(f"ndm y: {t_run:.1f} s for {r['steps_used']:.0f} steps (converged {r['converged']:.0f}), "
              f"held-out value {r['bound']:.4f}; 2 variants at most {full:.0f} s with the preset cap of {cfg.steps}")
        rows.append(("ndm", "y", full, "measured" if r["converged"] else "upper bound, extrapolated"))
    print(f"\n# load after: {os.getloadavg()}")
    print("| protocol | tap | seconds | note |\n|---|---|---|---|")
    for prot, tap, sec, note in rows:
        print(f"| {prot} | {tap} | {sec:.0f} | {note} |")
    return 0


def run_sklearn(xtr, ytr, xte, yte, args) -> list[tuple[float, float, float, bool]]:
    """LinearSVC(loss='hinge') on features standardised with train statistics (as ours)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    from repeval.plugin.protocol import zscore_stats
    mu, sd = zscore_stats(xtr)
    n = args.sklearn_subset or xtr.shape[0]
    idx = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    a = ((xtr[idx] - mu) / sd).numpy()
    b = ((xte - mu) / sd).numpy()
    out = []
    for c in (float(v) for v in args.sklearn_c.split(",")):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", ConvergenceWarning)
            t = time.time()
            clf = LinearSVC(C=c, loss="hinge", max_iter=args.sklearn_max_iter, random_state=0).fit(a, ytr[idx].numpy())
            sec = time.time() - t
        conv = not any(issubclass(x.category, ConvergenceWarning) for x in w)
        out.append((c, sec, 100.0 * float((clf.predict(b) == yte.numpy()).mean()), conv))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
