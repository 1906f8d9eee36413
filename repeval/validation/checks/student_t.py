"""Heavy tails: MINE (protocols/mine.py ``estimate_mi``, exactly as a user calls it) on multivariate
Student-t pairs, whose MI has a closed form (Arellano-Valle et al. 2013; the Student-t tasks of the
MI-estimator benchmark of Czyz et al., NeurIPS 2023): the Gaussian MI of the dispersion matrix plus a
positive correction for the shared heavy-tailed scale (:func:`repeval.validation.groundtruth.student_t_mi`).

Task k: X, Y in R^d_k, dispersion [[I, rho_k I], [rho_k I, I]], nu_k degrees of freedom. The default
(d = 5, nu = 2, rho = 0: I = 0.448 nats, all of it from the shared scale) is the benchmark's
"Student-t 5 x 5, dof 2" task. Pass: |estimate - I| <= ``abs_tol`` nats on every task, at
``n_samples`` pairs.
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
class StudentTSettings:
    n_samples: int = 10000
    dims: tuple[int, ...] = (5, 1, 2)        # task k: d_k, nu_k, rho_k (parallel tuples)
    dofs: tuple[float, ...] = (2.0, 1.0, 2.0)
    rhos: tuple[float, ...] = (0.0, 0.0, 0.5)
    abs_tol: float = 0.2                     # |MINE - I| in nats, every task

    def __post_init__(self):
        if not len(self.dims) == len(self.dofs) == len(self.rhos):
            raise ValueError(f"student_t: dims, dofs and rhos must have one entry per task, got "
                             f"{len(self.dims)}, {len(self.dofs)} and {len(self.rhos)}")
        if any(v <= 0 for v in self.dofs) or any(d < 1 for d in self.dims) or any(abs(r) >= 1 for r in self.rhos):
            raise ValueError("student_t: need dofs > 0, dims >= 1 and |rhos| < 1")


@register_check("student_t", order=50)
class StudentT(Check):
    Settings = StudentTSettings
    quick = {"dims": (1,), "dofs": (1.0,), "rhos": (0.0,)}   # the heaviest tail; 5 x 5 needs more steps than --quick gives
    columns = {"d": "dimension of X and of Y", "dof": "degrees of freedom nu", "rho": "dispersion corr(X_i, Y_i)",
               "true_mi": "closed form: gaussian_part + f(nu) + f(nu+2d) - 2 f(nu+d), f(k) = lnG(k/2) - (k/2) psi(k/2), nats",
               "gaussian_part": "-(d/2) log(1 - rho^2): the MI of the Gaussian with the same dispersion, nats",
               "mine": "MINE (protocols/mine.py estimate_mi): held-out DV bound (cross-fitted when mine.folds > 1), nats",
               "err": "mine - true_mi, nats", "relerr": "err / true_mi"}

    def measure(self, cfg, s: StudentTSettings, device, log):
        from repeval.protocols.mine import estimate_mi

        rows: list[dict] = []
        for d, dof, rho in zip(s.dims, s.dofs, s.rhos):
            ts = time.perf_counter()
            truth = gt.student_t_mi(rho, d, dof)
            x, y = gt.sample_student_t(s.n_samples, d, rho, dof, derive_seed(cfg.seed, "student-t", d, dof, rho))
            est = float(estimate_mi(x, y, seed=derive_seed(cfg.seed, "student-t-mine", d, dof, rho),
                                    **cfg.mine.options(device)))
            rows.append({"d": d, "dof": dof, "rho": rho, "true_mi": truth, "gaussian_part": gt.gaussian_mi(rho, d),
                         "mine": est, "err": est - truth, "relerr": relerr(est, truth)})
            log(f"  student_t d={d} dof={dof:g} rho={rho:g}: I={truth:.3f} mine={est:.3f} "
                f"({time.perf_counter() - ts:.1f}s)")
        return rows, {}

    def judge(self, cfg, s: StudentTSettings, rows, info):
        v = [Verdict("student_t", f"accuracy_d{r['d']}_dof{r['dof']:g}_rho{r['rho']:g}", abs(r["err"]) <= s.abs_tol,
                     f"|MINE - I| <= {s.abs_tol} nats (d={r['d']}, nu={r['dof']:g}, rho={r['rho']:g})",
                     f"MINE {r['mine']:.3f} vs I {r['true_mi']:.3f} (error {r['err']:+.3f})") for r in rows]
        notes = [f"{s.n_samples} pairs per task; (X, Y) = Gaussian pair / sqrt(W / nu), W ~ chi^2_nu shared by X "
                 "and Y; MINE options as in the Gaussian sweep."]
        return v, notes

    def plot(self, res: CheckResult, out: Path) -> list[Path]:
        df = pd.DataFrame(res.rows)
        labels = [f"d={r.d}, nu={r.dof:g}, rho={r.rho:g}" for r in df.itertuples()]
        pos = list(range(len(df)))
        fig, ax = plt.subplots(figsize=(max(4.5, 1.8 * len(df)), 4.2))
        ax.bar(pos, df["mine"], color="C0", alpha=0.8, label="MINE (protocol), held out")
        ax.plot(pos, df["true_mi"], "kD", ms=7, label="closed form")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xticks(pos, labels, rotation=15)
        ax.set_ylabel("I(X; Y) [nats]")
        ax.set_title("Heavy tails: multivariate Student-t")
        ax.legend(fontsize=8)
        return [save_png(fig, out / "student_t.png", dpi=110)]
