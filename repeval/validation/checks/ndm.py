"""NDM calibration: the neural dependency measure (protocols/ndm.py ``neural_dependency``; Hjelm et
al. 2019, Sec. 4.3 "NDM") on Gaussian codes z ~ N(0, R) whose total correlation has the closed form
TC = KL(p(z) || prod_i p(z_i)) = -1/2 log det R (R a factor-model correlation matrix).

Tolerances: within ``abs_tol`` + ``rel_tol`` * TC of the total correlation for TC <= ``max_tc``,
|NDM| <= ``zero_tol`` at TC = 0, and non-decreasing in TC (drops up to ``slack``).
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
from ..verdicts import Verdict, accuracy_verdict, relerr


@dataclass(frozen=True)
class NDMSettings:
    dim: int = 64
    rank: int = 4
    tcs: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    n_samples: int = 40000
    steps: int = 800                     # options of neural_dependency
    batch_size: int = 1000
    lr: float = 1e-4
    # tolerances (module docstring)
    max_tc: float = 2.0
    abs_tol: float = 0.15
    rel_tol: float = 0.25
    zero_tol: float = 0.1
    slack: float = 0.05

    def options(self, device: str = "cpu") -> dict:
        """Keyword options for ``repeval.protocols.ndm.neural_dependency``."""
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "device": device}


@register_check("ndm", order=30)
class NDMCalibration(Check):
    Settings = NDMSettings
    quick = {"tcs": (0.0, 1.0, 4.0), "n_samples": 10000, "steps": 200, "batch_size": 500, "lr": 3e-4}
    columns = {"true_tc": "closed form -1/2 log det R, nats",
               "ndm": "NDM (protocols/ndm.py neural_dependency), held-out DV estimate, nats",
               "err": "ndm - true_tc", "relerr": "err / true_tc"}

    def measure(self, cfg, s: NDMSettings, device, log):
        from repeval.protocols.ndm import neural_dependency

        rows: list[dict] = []
        for tc in s.tcs:
            ts = time.perf_counter()
            corr = gt.correlation_for_tc(s.dim, tc, derive_seed(cfg.seed, "ndm-corr"), rank=s.rank)
            truth = gt.gaussian_total_correlation(corr) + 0.0  # no -0.0
            z = gt.sample_gaussian_code(s.n_samples, corr, derive_seed(cfg.seed, "ndm-z", tc))
            est = float(neural_dependency(z, seed=derive_seed(cfg.seed, "ndm", tc), **s.options(device)))
            rows.append({"true_tc": truth, "ndm": est, "err": est - truth, "relerr": relerr(est, truth)})
            log(f"  ndm TC={truth:.3f}: ndm={est:.3f} ({time.perf_counter() - ts:.1f}s)")
        return rows, {}

    def judge(self, cfg, s: NDMSettings, rows, info):
        v = [accuracy_verdict("ndm", "accuracy", rows, "ndm", "true_tc", s.max_tc, s.abs_tol, s.rel_tol)]
        zero = [r for r in rows if r["true_tc"] <= 1e-9]
        if zero:
            z0 = zero[0]["ndm"]
            v.append(Verdict("ndm", "zero_at_independence", abs(z0) <= s.zero_tol,
                             f"|NDM| <= {s.zero_tol} at TC = 0", f"NDM {z0:.4f}"))
        srt = sorted(rows, key=lambda r: r["true_tc"])
        drops = [a["ndm"] - b["ndm"] for a, b in zip(srt, srt[1:])]
        worst = max(drops, default=0.0)
        v.append(Verdict("ndm", "monotone", worst <= s.slack,
                         f"NDM non-decreasing in TC (drops <= {s.slack})",
                         f"largest drop {worst:.3f}" if worst > 0 else f"no drop (smallest increase {-worst:.3f})"))
        opts = {k: val for k, val in s.options().items() if k != "device"}
        notes = [f"z ~ N(0, R) in {s.dim} dims, R a rank-{s.rank} factor-model correlation matrix scaled to "
                 f"the target TC; {s.n_samples} codes (half held out); NDM options {opts}."]
        return v, notes

    def plot(self, res: CheckResult, out: Path) -> list[Path]:
        df = pd.DataFrame(res.rows).sort_values("true_tc")
        fig, ax = plt.subplots(figsize=(6, 4.5))
        top = float(df["true_tc"].max())
        ax.plot([0, top], [0, top], "k--", lw=1, label="truth  -1/2 log det R")
        ax.plot(df["true_tc"], df["ndm"], "o-", ms=5, label="NDM (protocol)")
        ax.set_xlabel("true total correlation [nats]")
        ax.set_ylabel("NDM [nats]")
        ax.set_title("NDM calibration on Gaussian codes")
        ax.legend(fontsize=8)
        return [save_png(fig, out / "ndm.png", dpi=110)]
