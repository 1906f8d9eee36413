"""Invariance: MINE (protocols/mine.py ``estimate_mi``) on (g(X), X + sigma eps) for invertible g;
the truth is (d/2) log(1 + 1/sigma^2) for every g (MI is invariant under invertible maps of each
variable; MINE, Belghazi et al. 2018, Sec. 5.1.2).

Tolerances: estimates for the bi-Lipschitz maps (identity, linear, invertible residual MLP) within
``spread`` nats of each other, and the identity map within ``abs_tol`` + ``rel_tol`` * I of the
closed form. The cubic has the same true MI but hands the critic heavy-tailed inputs (x^3 of a
Gaussian has kurtosis 46), and MINE measurably falls short on it (27-29% below I in calibration
runs at sigma 0.3 and 0.5): it is judged separately, as a stated shortfall of at most
``heavy_rel`` * I and no overestimate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...report.figures import plt, save_png
from ...seeding import derive_seed
from .. import groundtruth as gt
from ..registry import Check, CheckResult, register_check
from ..verdicts import Verdict, relerr


@dataclass(frozen=True)
class InvarianceSettings:
    n_samples: int = 50000
    dim: int = 2                         # X ~ N(0, I_d), Y = X + sigma eps, estimator sees (g(X), Y)
    sigmas: tuple[float, ...] = (0.3, 1.0)
    maps: tuple[str, ...] = ("identity", "linear", "cubic", "residual_mlp")
    heavy_maps: tuple[str, ...] = ("cubic",)   # not bi-Lipschitz: heavy-tailed inputs for the critic
    # tolerances (module docstring)
    spread: float = 0.3
    abs_tol: float = 0.1
    rel_tol: float = 0.15
    heavy_rel: float = 0.4


@register_check("invariance", order=20)
class Invariance(Check):
    Settings = InvarianceSettings
    quick = {"n_samples": 10000, "sigmas": (0.5,)}
    columns = {
        "sigma": "noise std", "map": "invertible g applied to X (Y = g^-1(X') + sigma eps)",
        "true_mi": "(d/2) log(1 + 1/sigma^2), nats, the same for every g", "mine": "MINE held-out estimate, nats",
        "mine_train": "MINE critics on training pairs, nats", "err": "mine - true_mi", "relerr": "err / true_mi"}

    def measure(self, cfg, s: InvarianceSettings, device, log):
        from repeval.protocols.mine import estimate_mi_details

        rows: list[dict] = []
        for sigma in s.sigmas:
            truth = gt.noisy_channel_mi(s.dim, sigma)
            x, y = gt.sample_noisy_channel(s.n_samples, s.dim, sigma, derive_seed(cfg.seed, "inv", sigma))
            for name in s.maps:
                ts = time.perf_counter()
                g = gt.invertible_map(name, s.dim, derive_seed(cfg.seed, "inv-map"))
                m = estimate_mi_details(g(x), y, seed=derive_seed(cfg.seed, "inv-mine", sigma, name),
                                        **cfg.mine.options(device))
                rows.append({"sigma": sigma, "map": name, "true_mi": truth, "mine": m["mi"], "mine_train": m["mi_train"],
                             "err": m["mi"] - truth, "relerr": relerr(m["mi"], truth)})
                log(f"  invariance sigma={sigma} map={name}: I={truth:.3f} mine={m['mi']:.3f} "
                    f"({time.perf_counter() - ts:.1f}s)")
        return rows, {}

    def judge(self, cfg, s: InvarianceSettings, rows, info):
        """Bi-Lipschitz maps: estimates within ``spread`` of each other and identity close to the truth;
        heavy-tailed maps: the stated shortfall (no overestimate, at most ``heavy_rel`` * I below)."""
        v = []
        heavy = set(s.heavy_maps)
        for sigma in dict.fromkeys(r["sigma"] for r in rows):
            sub = [r for r in rows if r["sigma"] == sigma]
            truth = sub[0]["true_mi"]
            ests = {r["map"]: r["mine"] for r in sub if r["map"] not in heavy}
            if ests:
                spread = max(ests.values()) - min(ests.values())
                v.append(Verdict("invariance", f"spread_sigma{sigma:g}", spread <= s.spread,
                                 f"max - min of MINE over bi-Lipschitz maps {list(ests)} <= {s.spread} nats "
                                 f"(sigma={sigma:g})",
                                 f"spread {spread:.3f} (" + ", ".join(f"{k} {e:.3f}" for k, e in ests.items()) + ")"))
            if "identity" in ests:
                e = ests["identity"]
                ok = abs(e - truth) <= s.abs_tol + s.rel_tol * truth
                v.append(Verdict("invariance", f"identity_sigma{sigma:g}", ok,
                                 f"|MINE(identity) - I| <= {s.abs_tol} + {s.rel_tol}*I (sigma={sigma:g})",
                                 f"MINE {e:.3f} vs I {truth:.3f} (error {e - truth:+.3f})"))
            for r in sub:
                if r["map"] in heavy:
                    e = r["mine"]
                    ok = truth * (1 - s.heavy_rel) <= e <= truth + s.abs_tol
                    v.append(Verdict("invariance", f"{r['map']}_sigma{sigma:g}", ok,
                                     f"heavy-tailed map: (1 - {s.heavy_rel})*I <= MINE({r['map']}) <= I + "
                                     f"{s.abs_tol} (sigma={sigma:g}; MINE is known to fall short here)",
                                     f"MINE {e:.3f} vs I {truth:.3f} (error {e - truth:+.3f}, "
                                     f"{100 * (e / truth - 1):+.0f}%)"))
        notes = [f"d = {s.dim}; X ~ N(0, I), Y = X + sigma eps; the estimator sees (g(X), Y), so Y = f(X') + "
                 f"sigma eps with f = g^-1 invertible and I(g(X); Y) = I(X; Y). {s.n_samples} pairs; MINE as in the "
                 f"Gaussian sweep. Heavy-tailed maps (judged separately): {list(s.heavy_maps)}."]
        return v, notes

    def plot(self, res: CheckResult, out: Path) -> list[Path]:
        df = pd.DataFrame(res.rows)
        sigmas = list(dict.fromkeys(df["sigma"]))
        fig, axes = plt.subplots(1, len(sigmas), figsize=(4.5 * len(sigmas), 4.2), squeeze=False)
        for ax, sg in zip(axes[0], sigmas):
            sub = df[df["sigma"] == sg]
            truth = float(sub["true_mi"].iloc[0])
            pos = range(len(sub))
            ax.bar(pos, sub["mine"], color="C0", alpha=0.8, label="MINE (protocol), held out")
            ax.axhline(truth, color="k", ls="--", lw=1, label=f"truth (d/2) log(1 + 1/sigma^2) = {truth:.3f}")
            ax.set_xticks(list(pos), list(sub["map"]), rotation=20)
            ax.set_ylabel("I(g(X); Y) estimate [nats]")
            ax.set_title(f"sigma = {sg:g}")
            ax.set_ylim(0, max(truth, float(sub["mine"].max())) * 1.4)
            ax.legend(fontsize=8, loc="upper right")
        fig.suptitle("Invariance: MINE on (g(X), X + sigma eps), g invertible")
        return [save_png(fig, out / "invariance.png", dpi=110)]
