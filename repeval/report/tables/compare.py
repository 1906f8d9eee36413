"""Every pair of rows of a table compared against the seed spread, with the number of comparisons in
mind: ``comparisons.csv``.

For one column (a protocol's metric at a tap) and two models A, B compared at one encoder epoch (the
last both reached, or the one asked for; an untrained row such as Random init at its epoch 0) with
per-seed values a_1..a_n and b_1..b_m:

- ``diff`` = mean(a) - mean(b); ``sd_a``, ``sd_b`` the sample standard deviations over seeds;
- ``separated``: the seed ranges do not overlap (every seed of the higher row above every seed of the
  lower one) -- the gap exceeds the seed spread;
- ``p``: Welch's two-sided t-test (unequal variances; Welch 1947); ``p_holm``: Holm's step-down
  adjustment (Holm 1979) over *every* comparison of the dataset (all columns of Tables 1, 4 and X, all
  pairs), so a reader does not have to correct for the number of columns tested; ``significant`` =
  ``p_holm`` < ``ALPHA``.

Which spread (column ``spread``):

- ``training seeds``: both rows have >= 2 trained encoders (training seeds); each encoder is the
  mean over its probe seeds and Welch's test runs on those per-encoder means, so a significant gap
  says the *methods* differ beyond the variance of training them;
- ``training seeds (A)``: only row A (named) has >= 2 encoders; B's one encoder is read as one more draw
  from A's training-seed spread: t = (mean_A - b) / (s_A sqrt(1 + 1/k_A)), k_A - 1 degrees of
  freedom (the prediction interval of one new observation);
- ``probe seeds``: one encoder per row; the values are the protocol's seeds (probe or SVM
  initialisation, dropout, minibatch order), so a significant gap says the protocol separates these
  two trained *checkpoints*, not that the methods differ on every training run.

Only columns whose protocol has at least two values per row (seeds or encoders) enter. A comparison
involving a degenerate cell (``degenerate``: a record of either cell says ``degenerate: true``, e.g. the
linear SVM's W ≈ 0 regime, whose accuracy is not a linear separator's) keeps its ``p`` but is left
out of Holm's adjustment and the counts: ``p_holm`` empty, ``significant`` False.
"""
from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd

from .build import COLUMN_TABLES, SPREAD_PROBE, SPREAD_TRAIN, cell_records, per_encoder, record_epoch, record_flag

ALPHA = 0.05
COMPARISON_COLUMNS = ["dataset", "table", "column", "protocol", "tap", "metric", "model_a", "model_b", "epoch_a",
                      "epoch_b", "mean_a", "mean_b", "diff", "sd_a", "sd_b", "n_a", "n_b", "spread", "separated",
                      "p", "p_holm", "significant", "degenerate"]


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test between samples ``a`` and ``b`` (each >= 2 values); 0 when
    both are constant and differ, 1 when both are constant and equal."""
    from scipy.stats import ttest_ind
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    with warnings.catch_warnings():   # one constant sample: scipy warns about its zero variance, the test holds
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


def prediction_p(a: np.ndarray, b: float) -> float:
    """Two-sided p-value that ``b`` is one more draw from the population of ``a`` (k >= 2 values):
    t = (mean(a) - b) / (sd(a) sqrt(1 + 1/k)) on k - 1 degrees of freedom."""
    from scipy.stats import t as student_t
    k, sd = len(a), a.std(ddof=1)
    if sd == 0:
        return 1.0 if a.mean() == b else 0.0
    return float(2 * student_t.sf(abs(a.mean() - b) / (sd * np.sqrt(1 + 1 / k)), k - 1))


def _test(ga: dict[int, np.ndarray], gb: dict[int, np.ndarray], a: str, b: str) -> dict | None:
    """Compare two cells given per encoder (training seed -> values over probe seeds); see the module
    docstring for the three cases. None when a side has fewer than two values."""
    ma = np.array([v.mean() for v in ga.values()])
    mb = np.array([v.mean() for v in gb.values()])
    if len(ma) >= 2 and len(mb) >= 2:
        va, vb, spread, p = ma, mb, SPREAD_TRAIN, welch_p(ma, mb)
    elif len(ma) >= 2 or len(mb) >= 2:
        many, one = (ma, mb) if len(ma) >= 2 else (mb, ma)
        va, vb = ma, mb
        spread, p = f"{SPREAD_TRAIN} ({a if len(ma) >= 2 else b})", prediction_p(many, float(one[0]))
    else:
        va, vb = next(iter(ga.values())), next(iter(gb.values()))
        if len(va) < 2 or len(vb) < 2:
            return None
        spread, p = SPREAD_PROBE, welch_p(va, vb)
    sd = lambda v: float(v.std(ddof=1)) if len(v) > 1 else float("nan")  # noqa: E731
    return {"mean_a": va.mean(), "mean_b": vb.mean(), "diff": va.mean() - vb.mean(), "sd_a": sd(va), "sd_b": sd(vb),
            "n_a": len(va), "n_b": len(vb), "spread": spread,
            "separated": bool(va.min() > vb.max() or vb.min() > va.max()), "p": p}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control) of the p-values ``p`` (K,)."""
    k = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p[i]))
        adj[i] = running
    return adj


def _pair_epoch(ea: set[int], eb: set[int], epoch: int | None) -> tuple[int, int] | None:
    """The encoder epochs at which two models are compared: ``epoch`` (default: the last epoch both
    have) for trained rows; an untrained row (records only at epoch 0) at 0 against the other's
    ``epoch`` or last. None when they share no such epoch."""
    if ea == {0} or eb == {0}:
        def pick(es: set[int]) -> int | None:
            if es == {0}:
                return 0
            return max(es) if epoch is None else (epoch if epoch in es else None)
        a, b = pick(ea), pick(eb)
        return None if a is None or b is None else (a, b)
    common = ea & eb
    want = epoch if epoch is not None else max(common, default=None)
    return (want, want) if want in common else None


def pairwise(records: list[dict], dataset: str, epoch: int | None = None) -> pd.DataFrame:
    """One row per (column, pair of models) of ``dataset``'s Tables 1, 4 and X, each pair at one
    encoder epoch (:func:`_pair_epoch`: the last both reached, or ``epoch``), so that a model stopped
    early in a curve run is never compared with another's later epoch (module docstring)."""
    rows = []
    mine = [r for r in records if r.get("dataset", dataset) == dataset]
    for spec in COLUMN_TABLES:
        for col in spec.columns:
            vals: dict[tuple[str, int], dict[int, np.ndarray]] = {}
            degenerate: set[tuple[str, int]] = set()
            for m in sorted({r["model"] for r in mine}):
                own = [r for r in mine if r["model"] == m]
                for e in sorted({record_epoch(r) for r in own}):   # one configuration per epoch, not one overall
                    _, at, _, _ = cell_records([r for r in own if record_epoch(r) == e], col)
                    if not at:
                        continue
                    groups = per_encoder(at, col.metric)
                    if len(groups) >= 2 or len(next(iter(groups.values()))) >= 2:
                        vals[m, e] = groups
                    if any(record_flag(r, "degenerate") is True for r in at):
                        degenerate.add((m, e))
            models = sorted({m for m, _ in vals})
            for a, b in combinations(models, 2):
                ep = _pair_epoch({e for m, e in vals if m == a}, {e for m, e in vals if m == b}, epoch)
                if ep is None:
                    continue
                test = _test(vals[a, ep[0]], vals[b, ep[1]], a, b)
                if test is None:
                    continue
                rows.append({"dataset": dataset, "table": spec.name, "column": col.key, "protocol": col.protocol,
                             "tap": col.tap or "", "metric": col.metric, "model_a": a, "model_b": b,
                             "epoch_a": ep[0], "epoch_b": ep[1], **test,
                             "degenerate": (a, ep[0]) in degenerate or (b, ep[1]) in degenerate})
    df = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    if not df.empty:
        df["degenerate"] = df["degenerate"].astype(bool)
        counted = ~df["degenerate"]
        df["p_holm"] = np.nan
        df.loc[counted, "p_holm"] = holm(df.loc[counted, "p"].to_numpy(dtype=float))
        df["significant"] = counted & (df["p_holm"] < ALPHA)
    return df


def format_comparisons(df: pd.DataFrame) -> list[str]:
    """Summary lines: how many comparisons, how many separated by the seed spread, how many significant."""
    if df.empty:
        return []
    deg = df["degenerate"].astype(bool) if "degenerate" in df else pd.Series(False, index=df.index)
    counted = df[~deg]
    spreads = counted["spread"].value_counts()
    against = ", ".join(f"{n} against {s}" for s, n in spreads.items())
    lines = [f"{len(counted)} pairwise comparisons (every pair of rows, every column with >= 2 seeds): "
             f"{int(counted['separated'].sum())} gaps beyond the seed spread, {int(counted['significant'].sum())} "
             f"significant after Holm's correction over all {len(counted)} (Welch t, alpha {ALPHA}); {against}"]
    if deg.any():
        cols = ", ".join(dict.fromkeys(df.loc[deg, "column"]))
        lines.append(f"{int(deg.sum())} further comparisons involve a degenerate cell (‡, e.g. the SVM's W ≈ 0) and "
                     f"are not counted nor Holm-adjusted ({cols}): p_holm empty, significant False")
    return lines
