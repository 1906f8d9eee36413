"""SSIM sanity: every SSIM-type metric of the reconstruction protocol (:mod:`repeval.estimators.ssim`: SSIM,
Wang et al. 2004; the 3-scale MS-SSIM, Wang et al. 2003; the released DIM code's SSIM) is 1 on the
identity (within ``identity_tol``) and strictly decreasing along graded noise and blur.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...estimators.ssim import ms_ssim, released_ssim, ssim
from ...report.figures import plt, save_png
from ...seeding import derive_seed
from ..perturb import add_noise, gaussian_blur, synthetic_images
from ..registry import Check, CheckResult, register_check
from ..verdicts import Verdict

METRICS = {"ssim": ssim, "ms_ssim": ms_ssim, "released_ssim": released_ssim}   # fn(perturbed, original) -> (N,)
SOURCE = "repeval.estimators.ssim (the recon protocol's metrics): " + ", ".join(METRICS)


@dataclass(frozen=True)
class SSIMSettings:
    images: int = 16
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)
    blur_levels: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    identity_tol: float = 1e-4


@register_check("ssim", order=40)
class SSIMSanity(Check):
    Settings = SSIMSettings
    quick = {"images": 8}

    def measure(self, cfg, s: SSIMSettings, device, log):
        log(f"  ssim metrics from {SOURCE}")
        x = synthetic_images(s.images, derive_seed(cfg.seed, "ssim")).to(device)
        cases = [("identity", 0.0, x)]
        cases += [("noise", lv, add_noise(x, lv, derive_seed(cfg.seed, "ssim-noise", lv))) for lv in s.noise_levels]
        cases += [("blur", lv, gaussian_blur(x, lv)) for lv in s.blur_levels]
        rows = [{"perturbation": kind, "level": lvl, **{n: float(fn(y, x).mean()) for n, fn in METRICS.items()}}
                for kind, lvl, y in cases]
        note = f"{s.images} synthetic 3x32x32 images in [-1, 1] (smooth random fields + boxes); metrics: {SOURCE}"
        return rows, {"notes": [note]}

    def judge(self, cfg, s: SSIMSettings, rows, info):
        metrics = sorted(k for k in rows[0] if k not in ("perturbation", "level"))
        v = []
        for name in metrics:
            # the identity row; level-0 noise/blur rows are the unperturbed image too (perturb.py)
            same = ([r[name] for r in rows if r["perturbation"] == "identity"]
                    or [r[name] for r in rows if r["level"] == 0])
            dev = max((abs(u - 1.0) for u in same), default=float("inf"))
            v.append(Verdict("ssim", f"{name}_identity", dev <= s.identity_tol,
                             f"|{name}(x, x) - 1| <= {s.identity_tol}",
                             f"{name}(x, x) = {same[0]:.6f}" if same else "not measured"))
            for kind in ("noise", "blur"):
                vals = [r[name] for r in rows if r["perturbation"] == kind]
                ok = all(b < a for a, b in zip(vals, vals[1:]))
                v.append(Verdict("ssim", f"{name}_{kind}_monotone", ok, f"{name} strictly decreasing in {kind} level",
                                 " > ".join(f"{u:.4f}" for u in vals)))
        return v, []

    def column_meanings(self, rows):
        return {"perturbation": "identity: the image itself; noise: x + std*N(0,1) clipped to [-1,1]; "
                                "blur: Gaussian blur, sigma in pixels",
                "level": "noise std (data range 2) or blur sigma",
                **{n: f"{n}(perturbed, original)" for n in sorted(rows[0]) if n not in ("perturbation", "level")}}

    def plot(self, res: CheckResult, out: Path) -> list[Path]:
        df = pd.DataFrame(res.rows)
        metrics = sorted(c for c in df.columns if c not in ("perturbation", "level"))
        ident = df[df["perturbation"] == "identity"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, kind, xl in zip(axes, ("noise", "blur"), ("noise std (range [-1, 1])", "blur sigma [px]")):
            sub = df[df["perturbation"] == kind]
            if not (sub["level"] == 0).any():  # start the curve at the unperturbed image
                sub = pd.concat([ident.assign(perturbation=kind), sub])
            for m in metrics:
                ax.plot(sub["level"], sub[m], "o-", ms=4, label=m)
            ax.set_xlabel(xl)
            ax.set_ylabel("similarity to the original")
            ax.set_title(f"SSIM-type metrics under {kind}")
            ax.legend(fontsize=8)
        return [save_png(fig, out / "ssim.png", dpi=110)]
