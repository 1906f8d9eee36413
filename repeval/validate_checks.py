"""Measurements of ``repeval validate``: run the estimators on distributions with known answers
and return table rows. Verdicts are in :mod:`repeval.validate_judge`; no file I/O here.

The estimators are the protocols' own code: MINE is ``repeval.protocols.mine`` (``estimate_mi``;
:func:`estimate_mi_details` is the same computation returning its diagnostics too), NDM is
``repeval.protocols.ndm`` (``neural_dependency``), SSIM / MS-SSIM are the reconstruction
protocol's metric functions; the DV / JSD / infoNCE comparison bounds are :mod:`repeval.estimators`
trained with the small critic of :mod:`repeval.boundfit`.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from . import groundtruth as gt
from .boundfit import BoundFitConfig, BoundJob, fit_bounds
from .perturb import add_noise, gaussian_blur, synthetic_images
from .seeding import derive_seed
from .validate_config import ValidateConfig
from .validate_judge import CheckResult, judge, nats_columns, ndm_options

Log = Callable[[str], None]


def _relerr(est: float, truth: float) -> float:
    return (est - truth) / truth if truth > 1e-9 else float("nan")


# ----------------------------------------------------------------------------- 1. Gaussian sweep

def measure_gaussian(cfg: ValidateConfig, device: str, log: Log) -> tuple[list[dict], dict]:
    """MINE and DIM's bounds vs I = -(d/2) log(1 - rho^2) (MINE Sec. 5.1.1, DIM_SPEC.md ground truth)."""
    from repeval.protocols.mine import estimate_mi_details  # the protocol's estimator (estimate_mi)

    bcfg = BoundFitConfig(steps=cfg.bound_steps, batch_size=cfg.bound_batch_size,
                          eval_batch=cfg.bound_batch_size, lr=cfg.bound_lr, hidden=cfg.bound_hidden,
                          embed=cfg.bound_embed)
    log_k = math.log(cfg.bound_batch_size)
    rows: list[dict] = []
    for d in cfg.dims:
        data = {rho: gt.sample_correlated_gaussian(cfg.n_samples, d, rho, derive_seed(cfg.seed, "gaussian", d, rho))
                for rho in cfg.rhos}
        drows = []
        for rho, (x, y) in data.items():
            ts = time.perf_counter()
            truth = gt.gaussian_mi(rho, d)
            m = estimate_mi_details(x, y, seed=derive_seed(cfg.seed, "mine", d, rho), **cfg.mine_options(device))
            drows.append({"d": d, "rho": rho, "true_mi": truth, "mine": m["mi"], "mine_train": m["mi_train"],
                          "mine_still_increasing": m["still_increasing"]})
            log(f"  gaussian d={d} rho={rho:+.2f} I={truth:.3f}: mine={m['mi']:.3f} ({time.perf_counter() - ts:.1f}s)")
        if cfg.bounds:
            ts = time.perf_counter()
            jobs = [BoundJob(x, y, est, derive_seed(cfg.seed, "bound", d, rho))
                    for rho, (x, y) in data.items() for est in cfg.bounds]
            fits = iter(fit_bounds(jobs, bcfg, device=device))
            for row in drows:
                for est in cfg.bounds:
                    r = next(fits)
                    if est == "dv":
                        row["dv"], row["dv_train"] = r["dv"], r["dv_train"]
                    elif est == "jsd":
                        row["jsd_bound"], row["jsd_dv"], row["jsd_dv_train"] = r["jsd"], r["dv"], r["dv_train"]
                    else:
                        row["infonce"], row["infonce_train"] = r["infonce"], r["infonce_train"]
                log(f"  gaussian d={d} rho={row['rho']:+.2f} I={row['true_mi']:.3f}: " +
                    ", ".join(f"{c}={row[c]:.3f}" for c in ("dv", "jsd_bound", "jsd_dv", "infonce") if c in row))
            log(f"  bounds for d={d}: {len(jobs)} critics in {time.perf_counter() - ts:.1f}s")
        for row in drows:
            row["log_k"] = log_k
            for c in nats_columns(row):
                row[f"err_{c}"] = row[c] - row["true_mi"]
                row[f"relerr_{c}"] = _relerr(row[c], row["true_mi"])
        rows += drows
    return rows, {"log_k": log_k}


# ----------------------------------------------------------------------------- 2. invariance

def measure_invariance(cfg: ValidateConfig, device: str, log: Log) -> tuple[list[dict], dict]:
    """MINE on (g(X), X + sigma eps) for invertible g; the truth is (d/2) log(1 + 1/sigma^2) for every g."""
    from repeval.protocols.mine import estimate_mi_details

    rows: list[dict] = []
    for sigma in cfg.inv_sigmas:
        truth = gt.noisy_channel_mi(cfg.inv_dim, sigma)
        x, y = gt.sample_noisy_channel(cfg.n_samples, cfg.inv_dim, sigma, derive_seed(cfg.seed, "inv", sigma))
        for name in cfg.inv_maps:
            ts = time.perf_counter()
            g = gt.invertible_map(name, cfg.inv_dim, derive_seed(cfg.seed, "inv-map"))
            m = estimate_mi_details(g(x), y, seed=derive_seed(cfg.seed, "inv-mine", sigma, name),
                                    **cfg.mine_options(device))
            rows.append({"sigma": sigma, "map": name, "true_mi": truth, "mine": m["mi"], "mine_train": m["mi_train"],
                         "err": m["mi"] - truth, "relerr": _relerr(m["mi"], truth)})
            log(f"  invariance sigma={sigma} map={name}: I={truth:.3f} mine={m['mi']:.3f} "
                f"({time.perf_counter() - ts:.1f}s)")
    return rows, {}


# ----------------------------------------------------------------------------- 3. NDM calibration

def measure_ndm(cfg: ValidateConfig, device: str, log: Log) -> tuple[list[dict], dict]:
    """NDM (protocols/ndm.py) on Gaussian codes with TC = -1/2 log det R (DIM_SPEC.md protocol 5)."""
    from repeval.protocols.ndm import neural_dependency

    rows: list[dict] = []
    for tc in cfg.ndm_tcs:
        ts = time.perf_counter()
        corr = gt.correlation_for_tc(cfg.ndm_dim, tc, derive_seed(cfg.seed, "ndm-corr"), rank=cfg.ndm_rank)
        truth = gt.gaussian_total_correlation(corr) + 0.0  # no -0.0
        z = gt.sample_gaussian_code(cfg.ndm_n_samples, corr, derive_seed(cfg.seed, "ndm-z", tc))
        est = float(neural_dependency(z, seed=derive_seed(cfg.seed, "ndm", tc), **ndm_options(cfg, device)))
        rows.append({"true_tc": truth, "ndm": est, "err": est - truth, "relerr": _relerr(est, truth)})
        log(f"  ndm TC={truth:.3f}: ndm={est:.3f} ({time.perf_counter() - ts:.1f}s)")
    return rows, {}


# ----------------------------------------------------------------------------- 4. SSIM sanity

def measure_ssim(cfg: ValidateConfig, device: str, log: Log) -> tuple[list[dict], dict]:
    """Every SSIM-type metric of the recon protocol on the identity and along noise / blur grids."""
    from .validate_ssim import metric_functions

    fns, source = metric_functions()
    log(f"  ssim metrics from {source}")
    x = synthetic_images(cfg.ssim_images, derive_seed(cfg.seed, "ssim")).to(device)
    cases = [("identity", 0.0, x)]
    cases += [("noise", s, add_noise(x, s, derive_seed(cfg.seed, "ssim-noise", s))) for s in cfg.noise_levels]
    cases += [("blur", s, gaussian_blur(x, s)) for s in cfg.blur_levels]
    rows = [{"perturbation": kind, "level": lvl, **{n: float(fn(y, x)) for n, fn in fns.items()}}
            for kind, lvl, y in cases]
    note = (f"{cfg.ssim_images} synthetic 3x32x32 images in [-1, 1] (smooth random fields + boxes); "
            f"metrics: {source}")
    return rows, {"notes": [note]}


MEASURES = {"gaussian": measure_gaussian, "invariance": measure_invariance, "ndm": measure_ndm,
            "ssim": measure_ssim}


def run_check(name: str, cfg: ValidateConfig, device: str, log: Log) -> CheckResult:
    """Measure check ``name`` (wall time recorded) and judge it against ``cfg``'s tolerances."""
    t0 = time.perf_counter()
    rows, info = MEASURES[name](cfg, device, log)
    return judge(name, cfg, rows, wall_s=time.perf_counter() - t0, info=info)
