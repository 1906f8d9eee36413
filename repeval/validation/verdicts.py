"""PASS / FAIL verdicts of ``repeval validate`` and the tolerance tests several checks share: pure
functions of measured rows (no training, no I/O), so a report can be rebuilt from stored rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    check: str
    name: str
    passed: bool
    criterion: str      # the stated tolerance
    measured: str       # what was found (worst case)

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.check}/{self.name}: {self.criterion} -- {self.measured}"


def relerr(est: float, truth: float) -> float:
    """(est - truth) / truth; NaN where the truth is 0."""
    return (est - truth) / truth if truth > 1e-9 else float("nan")


def accuracy_verdict(check: str, name: str, rows: list[dict], col: str, truth: str, max_truth: float,
                     a: float, r: float) -> Verdict:
    """|col - truth| <= a + r * truth on the rows with truth <= max_truth; reports the row that used
    the largest share of its tolerance."""
    sel = [row for row in rows if row[truth] <= max_truth + 1e-12 and math.isfinite(row[col])]
    crit = f"|{col} - {truth}| <= {a} + {r}*{truth} for {truth} <= {max_truth}"
    if not sel:
        return Verdict(check, name, False, crit, "no points in range")
    used = [abs(row[col] - row[truth]) / (a + r * abs(row[truth])) for row in sel]
    k = max(range(len(sel)), key=used.__getitem__)
    w = sel[k]
    return Verdict(check, name, max(used) <= 1.0, crit,
                   f"worst {col}={w[col]:.3f} vs {truth}={w[truth]:.3f} (error {w[col] - w[truth]:+.3f}, "
                   f"{100 * used[k]:.0f}% of tolerance); {sum(u <= 1.0 for u in used)}/{len(sel)} within")


def overestimate_verdict(check: str, rows: list[dict], col: str, truth: str, a: float, r: float) -> Verdict:
    """``col`` <= truth + a + r * truth on every row (a lower bound must not overestimate)."""
    sel = [row for row in rows if math.isfinite(row[col])]
    worst = max(sel, key=lambda row: row[col] - row[truth] - r * row[truth])
    ok = all(row[col] <= row[truth] + a + r * row[truth] for row in sel)
    return Verdict(check, f"{col}_no_overestimate", ok,
                   f"{col} <= {truth} + {a} + {r}*{truth} everywhere (a lower bound, held out)",
                   f"largest excess {worst[col] - worst[truth]:+.3f} at {truth}={worst[truth]:.3f}")
