"""``REPORT.md`` and ``index.html`` of one results folder, generated from its records (Jinja2).

The prose a person wrote lives in the templates (``repeval/report/tables/templates/report.md.j2``, wrapped
for the browser by ``index.html.j2``), beside the placeholders it interprets; every number comes from
the records, through :class:`Facts` (the tables, curves, comparisons, rank agreement and timing that
``repeval table`` builds from them, and the records themselves), so no figure in a report can go stale.
A sentence that would be false for another results folder is conditional on the data. Nothing here
reads a clock: a report changes only when its records (or the templates) do.

``index.html`` is the same text converted by :func:`repeval.report.tables.markdown.to_html` (a converter for
the Markdown these templates write), with the figures inline.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ...data import dataset_names
from ...engine.presets import PRESETS
from ...registry import PROTOCOLS
from . import diagnosis
from .build import (EM_DASH, FLOOR_MODEL, _order_key, at_epoch, converged_flag, record_epoch, record_flag,
                    record_train_seed, stage_seconds)
from .render import FLAGS, MD, flag_legend, render_markdown

TEMPLATES = "templates"
REPORT_MD, REPORT_HTML = "REPORT.md", "index.html"


# ---------------------------------------------------------------------------------------------- numbers

def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x, fmt: str = ".2f") -> str:
    """A number in ``fmt``, an em dash for a missing one; a minus sign for negatives."""
    if _nan(x):
        return EM_DASH
    return f"{x:{fmt}}".replace("-", "−")


def signed(x, fmt: str = ".2f") -> str:
    if _nan(x):
        return EM_DASH
    return f"{x:+{fmt}}".replace("-", "−")


def pval(p) -> str:
    """A p-value: two significant digits, scientific below 0.01."""
    if _nan(p):
        return EM_DASH
    return f"{p:.2g}" if p >= 0.01 else f"{p:.1e}"


def span(values, fmt: str = ".2f", sep: str = "–") -> str:
    """``lo–hi`` of the finite values (one number when they agree at ``fmt``)."""
    vals = [v for v in values if not _nan(v)]
    if not vals:
        return EM_DASH
    lo, hi = num(min(vals), fmt), num(max(vals), fmt)
    return lo if lo == hi else f"{lo}{sep if min(vals) >= 0 else ' to '}{hi}"


def minus(a, b):
    """a − b, None when either is missing (the template's subtraction)."""
    return None if _nan(a) or _nan(b) else a - b


def thousands(x) -> str:
    return EM_DASH if _nan(x) else f"{x:,.0f}"


# ---------------------------------------------------------------------------------------------- facts

class Facts:
    """What the report template may read, all from one dataset's records and the frames built from them."""

    def __init__(self, records: list[dict], dataset: str, frames: dict[str, pd.DataFrame],
                 notes: dict[str, list[str]], ranks: pd.DataFrame, comparisons: pd.DataFrame,
                 curves: pd.DataFrame, timing: pd.DataFrame, spectrum: pd.DataFrame | None,
                 figures: dict[str, str], folder: Path, epoch: int | None = None):
        self.records = [r for r in records if r.get("dataset", dataset) == dataset]
        self.ds = dataset
        self.frames = frames
        self.notes = notes
        self.ranks = ranks
        self.comparisons = comparisons
        self.curves = curves
        self.timing = timing
        self.spectrum = spectrum if spectrum is not None else pd.DataFrame()
        self.figures = figures
        self.epoch = epoch
        self.diag = diagnosis.load(folder)
        self.at = at_epoch(self.records, epoch)
        names = {}
        for r in self.records:
            names.setdefault(r["model"], r.get("display") or r["model"])
        self._names = names
        self.models = sorted(names, key=lambda m: _order_key(1, m, names[m]))

    # -- the dataset
    @property
    def title(self) -> str:
        return paper.dataset_title(self.ds)

    @property
    def paper_dataset(self) -> str | None:
        return paper.paper_dataset(self.ds)

    @property
    def paper_title(self) -> str:
        return paper.dataset_title(self.paper_dataset) if self.paper_dataset else ""

    @property
    def copy(self) -> bool:
        """Compared with the paper's numbers of another dataset (a copy: e.g. the JPEG-derived CIFAR-10)."""
        return bool(self.paper_dataset) and self.paper_dataset != self.ds

    @property
    def dataset_note(self) -> str:
        return "; ".join(sorted({r.get("dataset_note") or "" for r in self.records} - {""}))

    @property
    def presets(self) -> list[str]:
        return sorted({str(r.get("preset")) for r in self.records if r.get("preset")})

    @property
    def dataset_arg(self) -> str:
        """``repeval run --dataset`` to reproduce the records: empty when it is the preset's own, the
        dataset's name when it is a built-in reader, else ``npz:DIR`` (a copy read from a folder)."""
        preset = PRESETS.get(self.presets[0]) if self.presets and self.presets[0] in PRESETS else None
        if preset is not None and preset.dataset == self.ds:
            return ""
        return self.ds if self.ds in dataset_names() else "npz:DIR"

    # -- models
    def name(self, m: str) -> str:
        return self._names.get(m, m)

    def has(self, *models: str) -> bool:
        return all(m in self._names for m in models)

    @property
    def trained(self) -> list[str]:
        return [m for m in self.models if self.last_epoch(m) > 0]

    @property
    def trained_epochs(self) -> list[int]:
        return [self.last_epoch(m) for m in self.trained]

    @property
    def floor(self) -> str | None:
        return FLOOR_MODEL if self.has(FLOOR_MODEL) else None

    def last_epoch(self, m: str) -> int:
        return max((record_epoch(r) for r in self.records if r["model"] == m), default=0)

    def n_records(self, m: str | None = None) -> int:
        return sum(1 for r in self.records if m is None or r["model"] == m)

    def protocols_of(self, m: str, epoch: int | None = None) -> list[str]:
        got = {r["protocol"] for r in self.records if r["model"] == m and (epoch is None or record_epoch(r) == epoch)}
        return [p for p in PROTOCOLS if p in got] + sorted(got - set(PROTOCOLS))

    def eval_epochs(self, m: str) -> list[int]:
        return sorted({record_epoch(r) for r in self.records if r["model"] == m})

    def names(self, models) -> str:
        """'A, B and C'."""
        ns = [self.name(m) for m in models]
        return ", ".join(ns[:-1]) + (" and " if len(ns) > 1 else "") + (ns[-1] if ns else "")

    # -- table cells
    def _row(self, table: str, m: str, col: str) -> pd.Series | None:
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return None
        g = df[(df["model"] == m) & (df["column"] == col)]
        return None if g.empty else g.iloc[0]

    def val(self, table: str, m: str, col: str) -> float | None:
        row = self._row(table, m, col)
        return None if row is None or _nan(row["mean"]) else float(row["mean"])

    def any_val(self, table: str, col: str) -> bool:
        """Whether any row of ``table`` has a value in column ``col``."""
        return any(self.val(table, m, col) is not None for m in self.in_table(table))

    def fit_unconverged(self, m: str, protocol: str, metric: str) -> bool:
        """Whether a ``protocol`` record of ``m`` says the fit behind ``metric`` did not converge
        (:func:`converged_flag`: ``<metric>_converged``, else ``converged``), as the tables' †."""
        return any(converged_flag(r, metric) is False for r in self.recs(m, protocol))

    def any_fit_unconverged(self, table: str, protocol: str, *metrics: str) -> bool:
        """Whether :meth:`fit_unconverged` holds for a row of ``table`` and one of ``metrics``."""
        return any(self.fit_unconverged(m, protocol, k) for m in self.in_table(table) for k in metrics)

    def std(self, table: str, m: str, col: str) -> float | None:
        row = self._row(table, m, col)
        return None if row is None or _nan(row["std"]) else float(row["std"])

    def paper(self, table: str, m: str, col: str) -> float | None:
        row = self._row(table, m, col)
        return None if row is None or _nan(row["paper"]) else float(row["paper"])

    def flag(self, table: str, m: str, col: str, key: str) -> bool:
        row = self._row(table, m, col)
        return bool(row is not None and row[key])

    def cell(self, table: str, m: str, col: str, fmt: str | None = None) -> str:
        """A cell as its table prints it: mean ± std and its marks."""
        row = self._row(table, m, col)
        if row is None or _nan(row["mean"]):
            return EM_DASH
        fmt = fmt or row["_fmt"]
        s = num(row["mean"], fmt) + (f" ± {num(row['std'], fmt)}" if row["n"] > 1 and not _nan(row["std"]) else "")
        return s + "".join(m for m, key in zip(MD.marks, FLAGS) if row[key])

    def columns(self, table: str) -> list[str]:
        df = self.frames.get(f"table{table}")
        return [] if df is None or df.empty else list(dict.fromkeys(df["column"]))

    def in_table(self, table: str) -> list[str]:
        """Our models with a value in the table, in its row order."""
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return []
        have = df[df["mean"].notna()].sort_values("row", kind="stable")
        return list(dict.fromkeys(have["model"]))

    def count_flag(self, table: str, key: str, cols=None) -> tuple[int, int]:
        """(cells with the flag, cells with a value) in a table (or in some of its columns)."""
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return 0, 0
        have = df[df["mean"].notna() & (df["column"].isin(cols) if cols else True)]
        return int(have[key].astype(bool).sum()), len(have)

    def flagged(self, table: str, key: str) -> list[tuple[str, str]]:
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return []
        have = df[df["mean"].notna() & df[key].astype(bool)]
        return list(zip(have["model"], have["column"]))

    def order(self, table: str, col: str, models=None) -> list[str]:
        """Models ordered by our value in a column, highest first."""
        ms = [m for m in (models or self.models) if self.val(table, m, col) is not None]
        return sorted(ms, key=lambda m: -self.val(table, m, col))

    def paper_order(self, table: str, col: str, models=None) -> list[str]:
        ms = [m for m in (models or self.models) if self.paper(table, m, col) is not None]
        return sorted(ms, key=lambda m: -self.paper(table, m, col))

    def grid(self, table: str) -> str:
        """The table's grid (Markdown, no footnotes), as in ``table<N>.md``."""
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return ""
        from .build import SPECS
        return render_markdown(df, SPECS[table], []).split("\n", 2)[2].split("\nNotes:")[0].strip()

    def figure_note(self, table: str) -> str | None:
        """Which columns the table's figure leaves out, and why (saturated, fewer than two values)."""
        from ..plots import panel_says_nothing
        from .scales import unit
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return None
        out = []
        for col, g in df.groupby("column", sort=False):
            why = panel_says_nothing(g, unit(g["protocol"].iloc[0], g["metric"].iloc[0]))
            if why:
                out.append(f"{g['column_label'].iloc[0]} ({why})")
        if not out:
            return None
        whole = len(out) == df["column"].nunique()
        return (f"{'No figure' if whole else 'Left out of the figure'}: " + "; ".join(out) +
                (". The table above holds the numbers." if whole else "."))

    def table_notes(self, table: str) -> list[str]:
        return self.notes.get(f"table{table}", [])

    def legend(self, table: str) -> str | None:
        df = self.frames.get(f"table{table}")
        return None if df is None else flag_legend(df)

    # -- records of one model at the table epoch
    def recs(self, m: str, protocol: str, tap: str | None = None, epoch: int | None = None) -> list[dict]:
        pool = self.records if epoch is not None else self.at
        return [r for r in pool if r["model"] == m and r["protocol"] == protocol and r.get("success")
                and (tap is None or r.get("tap") == tap) and (epoch is None or record_epoch(r) == epoch)]

    def metric(self, m: str, protocol: str, key: str, tap: str | None = None, epoch: int | None = None):
        """The mean of a metric over a model's records (at the table epoch unless ``epoch``), None if absent."""
        vals = [float(r["metrics"][key]) for r in self.recs(m, protocol, tap, epoch)
                if isinstance((r.get("metrics") or {}).get(key), (int, float))]
        return float(np.mean(vals)) if vals else None

    def metric_span(self, m: str, protocol: str, key: str, tap: str | None = None, epoch: int | None = None,
                    fmt: str = ".2f") -> str:
        vals = [float(r["metrics"][key]) for r in self.recs(m, protocol, tap, epoch)
                if isinstance((r.get("metrics") or {}).get(key), (int, float))]
        return span(vals, fmt)

    def metric_all(self, protocol: str, key: str, models=None) -> list[float]:
        return [float(r["metrics"][key]) for r in self.at if r["protocol"] == protocol and r.get("success")
                and (models is None or r["model"] in models) and isinstance((r.get("metrics") or {}).get(key),
                                                                             (int, float))]

    def unconverged(self, m: str, protocol: str, tap: str, key: str, fmt: str = ".4f") -> str:
        """'2 of 5 seeds (0.0080–0.0084)': the records of a cell that say ``converged: false`` and the span
        of one of their metrics."""
        rs = self.recs(m, protocol, tap)
        bad = [r for r in rs if record_flag(r, "converged") is False]
        vals = [float(r["metrics"][key]) for r in bad if isinstance(r["metrics"].get(key), (int, float))]
        who = "every seed" if len(bad) == len(rs) else f"{len(bad)} of {len(rs)} seeds"
        return f"{who} ({span(vals, fmt)})"

    def n_seeds(self, m: str, protocol: str, tap: str | None = None) -> int:
        return len({r.get("seed") for r in self.recs(m, protocol, tap)})

    def history(self, m: str, key: str) -> list[float]:
        """A model's per-epoch training losses (``history``) from its latest record."""
        rs = [r for r in self.records if r["model"] == m and r.get("history")]
        if not rs:
            return []
        rec = max(rs, key=record_epoch)
        return [float(h[key]) for h in rec["history"] if isinstance(h.get(key), (int, float))]

    # -- learning curves
    def cur(self, m: str, tap: str, epoch: int, protocol: str = "mlp", metric: str = "accuracy") -> float | None:
        c = self.curves
        if c.empty:
            return None
        g = c[(c["model"] == m) & (c["tap"] == tap) & (c["epoch"] == epoch) & (c["protocol"] == protocol)
              & (c["metric"] == metric)]
        return None if g.empty else float(g["mean"].iloc[0])

    def cur_text(self, m: str, tap: str, epoch: int, protocol: str = "mlp", metric: str = "accuracy") -> str:
        c = self.curves
        g = c[(c["model"] == m) & (c["tap"] == tap) & (c["epoch"] == epoch) & (c["protocol"] == protocol)
              & (c["metric"] == metric)] if not c.empty else c
        if g.empty:
            return EM_DASH
        r = g.iloc[0]
        return num(r["mean"]) + (f" ± {num(r['std'])}" if r["n"] > 1 and not _nan(r["std"]) else "")

    def curve_epochs(self, m: str | None = None, protocol: str = "mlp") -> list[int]:
        """The encoder epochs with ``protocol`` records of model ``m``; without ``m``, of every trained
        model (an untrained or loaded encoder, at epoch 0, is not a point of a training curve)."""
        c = self.curves
        if c.empty:
            return []
        g = c[(c["protocol"] == protocol) & ((c["model"] == m) if m else c["model"].isin(self.trained))]
        return sorted(int(e) for e in g["epoch"].unique())

    def curve_left_out(self) -> list[tuple[str, list[int]]]:
        """(model, training seeds) of the probe's records left out of a model's curve: trained encoders
        evaluated at some epochs only (:func:`repeval.report.tables.curves.curve_table`)."""
        c = self.curves
        out = []
        for m in self.curve_models():
            g = c[(c["protocol"] == "mlp") & (c["model"] == m)]
            kept = {int(t) for ts in g["train_seeds"].astype(str) for t in ts.split()}
            seeds = {record_train_seed(r) for r in self.records if r["model"] == m and r["protocol"] == "mlp"}
            if seeds - kept:
                out.append((m, sorted(seeds - kept)))
        return out

    @property
    def has_curves(self) -> bool:
        return any(len(self.curve_epochs(m)) >= 2 for m in self.trained)

    def curve_models(self, protocol: str = "mlp") -> list[str]:
        return [m for m in self.trained if len(self.curve_epochs(m, protocol)) >= 2]

    def taps(self, protocol: str = "mlp") -> list[str]:
        c = self.curves
        return [] if c.empty else list(dict.fromkeys(c.loc[c["protocol"] == protocol, "tap"]))

    def gain(self, m: str, tap: str, e0: int, e1: int) -> float | None:
        a, b = self.cur(m, tap, e0), self.cur(m, tap, e1)
        return None if a is None or b is None else b - a

    def peak(self, m: str, tap: str) -> int | None:
        es = self.curve_epochs(m)
        return max(es, key=lambda e: self.cur(m, tap, e)) if es else None

    def monotone(self, m: str, tap: str) -> bool:
        es = self.curve_epochs(m)
        vals = [self.cur(m, tap, e) for e in es]
        return all(b > a for a, b in zip(vals, vals[1:]))

    def cur_std(self, m: str, tap: str, epoch: int, protocol: str = "mlp", metric: str = "accuracy") -> float:
        c = self.curves
        g = c[(c["model"] == m) & (c["tap"] == tap) & (c["epoch"] == epoch) & (c["protocol"] == protocol)
              & (c["metric"] == metric)] if not c.empty else c
        return 0.0 if g.empty or _nan(g["std"].iloc[0]) else float(g["std"].iloc[0])

    def lead(self, a: str, b: str, epoch: int, taps=None) -> str:
        """Who is ahead at one curve epoch, tap by tap: 'A ahead on conv and fc (by 1.1–1.7), level on y'.
        Level: the gap within the larger of the two seed stds."""
        taps = taps or self.taps()
        groups: dict[str, list[tuple[str, float]]] = {a: [], b: [], "": []}
        for t in taps:
            va, vb = self.cur(a, t, epoch), self.cur(b, t, epoch)
            if va is None or vb is None:
                continue
            d = va - vb
            sd = max(self.cur_std(a, t, epoch), self.cur_std(b, t, epoch))
            groups["" if abs(d) <= sd else (a if d > 0 else b)].append((t, abs(d)))
        parts = []
        for who in (a, b, ""):
            g = groups[who]
            if not g:
                continue
            where = "every tap" if len(g) == len(taps) else " and ".join(t for t, _ in g)
            if who:
                parts.append(f"{self.name(who)} ahead on {where} (by {span([d for _, d in g])})")
            else:
                parts.append(f"level on {where}")
        return ", ".join(parts)

    def vs_paper(self, m: str, cols, table: str = "1", fmt: str = ".2f") -> str:
        """'1.02 below the paper's on conv, 0.07 above on fc, ...' from the table's Δ."""
        parts = []
        for i, c in enumerate(cols):
            v, p = self.val(table, m, c), self.paper(table, m, c)
            if v is None or p is None:
                continue
            d = v - p
            word = "above" if d > 0 else "below"
            parts.append(f"{num(abs(d), fmt)} {word}" + (" the paper's" if not parts else "") + f" on {c}")
        return ", ".join(parts)

    def tau(self, table: str, col: str, exclude=()) -> float | None:
        """Kendall's τ-b of our column against the paper's over the rows both have, some rows left out
        (degenerate cells are never ranked)."""
        from scipy.stats import kendalltau
        df = self.frames.get(f"table{table}")
        if df is None or df.empty:
            return None
        g = df[(df["column"] == col) & df["mean"].notna() & df["paper"].notna() & ~df["degenerate"].astype(bool)
               & ~df["model"].isin(list(exclude))]
        if len(g) < 2 or g["mean"].nunique() < 2 or g["paper"].nunique() < 2:
            return None
        return round(float(kendalltau(g["mean"].to_numpy(), g["paper"].to_numpy()).statistic), 12)

    def coverage(self, m: str) -> str:
        """'mlp and knn at epochs 1, 3, 6 and 10; svm, recon at 10': a model's protocols by evaluated
        epochs, per trained encoder ('training seed 1: ...') when the model has several."""
        own = [r for r in self.records if r["model"] == m]
        seeds = sorted({record_train_seed(r) for r in own})

        def ep(es):
            words = [str(e) for e in es]
            return ("epochs " if len(words) > 1 else "epoch ") + (", ".join(words[:-1]) + " and " + words[-1]
                                                                  if len(words) > 1 else words[0])

        def one(recs):
            by: dict[tuple[int, ...], list[str]] = {}
            for p in self.protocols_of(m):
                es = tuple(sorted({record_epoch(r) for r in recs if r["protocol"] == p}))
                if es:
                    by.setdefault(es, []).append(f"`{p}`")
            return "; ".join(", ".join(ps) + " at " + ep(es)
                             for es, ps in sorted(by.items(), key=lambda kv: -len(kv[0])))

        if len(seeds) < 2:
            return one(own)
        return "; ".join(f"training seed {t}: " + one([r for r in own if record_train_seed(r) == t]) for t in seeds)

    # -- comparisons
    def cmp(self, a: str, b: str, col: str, table: str = "1") -> dict | None:
        """The comparison of a against b in a column (``diff`` = a − b), or None."""
        df = self.comparisons
        if df.empty:
            return None
        t = f"table{table}"
        g = df[(df["table"] == t) & (df["column"] == col) & (((df["model_a"] == a) & (df["model_b"] == b))
                                                          | ((df["model_a"] == b) & (df["model_b"] == a)))]
        if g.empty:
            return None
        r = g.iloc[0].to_dict()
        if r["model_a"] != a:
            r["diff"] = -r["diff"]
        r["significant"] = bool(r["significant"])
        r["separated"] = bool(r["separated"])
        r["degenerate"] = bool(r.get("degenerate", False))
        return r

    def ps(self, a: str, b: str, cols, table: str = "1") -> str:
        """Holm-adjusted p-values of a against b over several columns, joined by ', '."""
        return ", ".join(pval((self.cmp(a, b, c, table) or {}).get("p_holm")) for c in cols)

    def diffs(self, a: str, b: str, cols, table: str = "1", fmt: str = ".2f") -> str:
        return " / ".join(num(self.val(table, a, c) - self.val(table, b, c), fmt)
                          if self.val(table, a, c) is not None and self.val(table, b, c) is not None else EM_DASH
                          for c in cols)

    def all_ahead(self, a: str, b: str, cols, table: str = "1") -> bool:
        return all((self.cmp(a, b, c, table) or {}).get("diff", -1) > 0 for c in cols)

    def all_significant(self, a: str, b: str, cols, table: str = "1") -> bool:
        return all((self.cmp(a, b, c, table) or {}).get("significant", False) for c in cols)

    def any_significant(self, a: str, b: str, cols, table: str = "1") -> bool:
        return any((self.cmp(a, b, c, table) or {}).get("significant", False) for c in cols)

    def all_separated(self, a: str, b: str, cols, table: str = "1") -> bool:
        return all((self.cmp(a, b, c, table) or {}).get("separated", False) for c in cols)

    def spread_ratio(self, a: str, b: str, col: str, table: str = "1") -> float | None:
        """The gap divided by the larger of the two seed stds."""
        c = self.cmp(a, b, col, table)
        if c is None:
            return None
        sd = max(c["sd_a"], c["sd_b"])
        return abs(c["diff"]) / sd if sd > 0 else None

    def comparison_counts(self) -> list[dict]:
        """Per spread (probe or training seeds): comparisons counted, gaps beyond the spread, significant;
        and the degenerate ones, reported apart."""
        df = self.comparisons
        if df.empty:
            return []
        deg = df["degenerate"].astype(bool)
        rows = []
        for spread, g in df[~deg].groupby("spread", sort=True):
            rows.append({"spread": spread, "n": len(g), "separated": int(g["separated"].sum()),
                         "significant": int(g["significant"].sum())})
        return rows

    def pair_counts(self, a: str, b: str) -> dict:
        """Of the counted comparisons between two rows (every column): how many, beyond the spread, significant."""
        df = self.comparisons
        if df.empty:
            return {"n": 0, "separated": 0, "significant": 0}
        g = df[(((df["model_a"] == a) & (df["model_b"] == b)) | ((df["model_a"] == b) & (df["model_b"] == a)))
               & ~df["degenerate"].astype(bool)]
        return {"n": len(g), "separated": int(g["separated"].sum()), "significant": int(g["significant"].sum())}

    @property
    def n_comparisons(self) -> int:
        df = self.comparisons
        return 0 if df.empty else int((~df["degenerate"].astype(bool)).sum())

    @property
    def degenerate_comparisons(self) -> pd.DataFrame:
        df = self.comparisons
        return df.iloc[0:0] if df.empty else df[df["degenerate"].astype(bool)]

    def comparison_rows(self, table: str = "1") -> list[dict]:
        df = self.comparisons
        if df.empty:
            return []
        g = df[df["table"] == f"table{table}"]
        return [r for _, r in g.iterrows()]

    # -- rank agreement
    def rank(self, table: str, col: str) -> dict | None:
        df = self.ranks
        if df is None or df.empty:
            return None
        g = df[(df["table"] == f"table{table}") & (df["column"] == col)]
        return None if g.empty else g.iloc[0].to_dict()

    def rank_rows(self) -> list[dict]:
        return [] if self.ranks is None or self.ranks.empty else [r for _, r in self.ranks.iterrows()]

    # -- the probe's convergence check (records of protocol mlp)
    def check(self, m: str, tap: str | None = None, epoch: int | None = None, protocol: str = "mlp") -> dict:
        """The half-budget check over a model's probe records (all epochs unless ``epoch``): how many,
        how many failed, and the range of the gain over the half budget."""
        rs = [r for r in self.records if r["model"] == m and r["protocol"] == protocol and r.get("success")
              and (tap is None or r.get("tap") == tap) and (epoch is None or record_epoch(r) == epoch)]
        gains = [float(r["metrics"]["gain_over_half_budget"]) for r in rs
                 if isinstance(r["metrics"].get("gain_over_half_budget"), (int, float))]
        failed = sum(record_flag(r, "converged") is False for r in rs)
        return {"n": len(rs), "failed": failed, "passed": len(rs) - failed, "gains": gains,
                "gain": span(gains), "gmin": min(gains, default=None), "gmax": max(gains, default=None)}

    # -- why we differ from the paper
    def paper_preset(self, section: str) -> dict:
        return PRESETS.get("paper").section(section) if "paper" in PRESETS else {}

    def critic_units(self) -> list[int]:
        return sorted({int(r["config"]["encoder"]["config"]["critic_units"]) for r in self.at
                       if isinstance(((r.get("config") or {}).get("encoder") or {}).get("config"), dict)
                       and "critic_units" in r["config"]["encoder"]["config"]})

    def probe_config(self) -> dict:
        cfgs = [(r.get("config") or {}).get("protocol_config") or {} for r in self.at if r["protocol"] == "mlp"]
        return cfgs[0] if cfgs else {}

    @staticmethod
    def schedule(cfg: dict) -> str:
        """A probe config as a phrase: '10 epochs, cosine decay, Adam 0.001, batch 128' (what it holds)."""
        parts = []
        if cfg.get("epochs") is not None:
            parts.append(f"{cfg['epochs']} epochs")
        if cfg.get("schedule") == "cosine":
            parts.append("cosine learning-rate decay")
        elif cfg.get("schedule"):
            ms = cfg.get("milestones")
            drop = f"× {cfg['gamma']:g}" if cfg.get("gamma") is not None else "dropped"
            parts.append(f"{cfg['schedule']} learning rate" + (f" ({drop} at epochs {', '.join(map(str, ms))})"
                                                               if ms else ""))
        if cfg.get("lr") is not None:
            parts.append(f"Adam {cfg['lr']:g}")
        if cfg.get("batch_size") is not None:
            parts.append(f"batch {cfg['batch_size']}")
        return ", ".join(parts) or "its defaults"

    def averaging(self, table: str = "1") -> dict | None:
        """Final accuracy against the mean over the last epochs (``accuracy_avg_last``) over the probe
        records at the table epoch: how much the paper's way of reading the probe would move a cell."""
        rs = [r for r in self.at if r["protocol"] == "mlp" and r.get("success")
              and isinstance(r["metrics"].get("accuracy_avg_last"), (int, float))
              and isinstance(r["metrics"].get("accuracy"), (int, float)) and r["model"] != FLOOR_MODEL]
        if not rs:
            return None
        d = [r["metrics"]["accuracy_avg_last"] - r["metrics"]["accuracy"] for r in rs]
        return {"n": len(rs), "mean": float(np.mean(d)), "min": float(min(d)), "max": float(max(d)),
                "last": self.probe_config().get("average_last")}

    def rising(self) -> list[dict]:
        """Per trained model with a curve: the gain of its probe over its last two evaluated epochs, per tap."""
        out = []
        for m in self.curve_models():
            es = self.curve_epochs(m)
            gains = {t: self.gain(m, t, es[-2], es[-1]) for t in self.taps()}
            out.append({"model": m, "from": es[-2], "to": es[-1], "gains": gains,
                        "max_tap": max(gains, key=lambda t: -math.inf if gains[t] is None else gains[t])})
        return out

    # -- timing
    def timing_rows(self) -> list[dict]:
        return [] if self.timing.empty else [r for _, r in self.timing.iterrows()]

    @property
    def timing_protocols(self) -> list[str]:
        return [c[:-2] for c in self.timing.columns if c.endswith("_s") and c not in
                ("train_s", "extract_s", "other_s", "total_s")] if not self.timing.empty else []

    def train_stretches(self, m: str) -> list[tuple[int, int, float]]:
        """(training seed, epoch, training seconds of the stretch that ended there) of model ``m``'s
        encoders (:func:`repeval.report.tables.build.stage_seconds`)."""
        return sorted((seed, e, st["train_s"]) for (_, model, seed, e), st in
                      stage_seconds([r for r in self.records if r["model"] == m]).items() if st["train_s"] > 1.0)

    # -- provenance
    def provenance(self) -> dict:
        commits, devices, versions, created = set(), set(), defaultdict(set), []
        for r in self.records:
            prov = r.get("provenance") or {}
            commits.add(str(prov.get("git_commit", "unknown"))[:12] + ("+dirty" if str(
                prov.get("git_commit", "")).endswith("+dirty") else ""))
            devices.add(str((prov.get("machine") or {}).get("device", "unknown")))
            for k, v in (prov.get("versions") or {}).items():
                versions[k].add(str(v))
            if r.get("created"):
                created.append(str(r["created"]))
        return {"commits": sorted(commits), "devices": sorted(devices),
                "versions": {k: " / ".join(sorted(v)) for k, v in sorted(versions.items())},
                "first": min(created, default=""), "last": max(created, default="")}

    # -- spectrum
    @property
    def has_spectrum(self) -> bool:
        return not self.spectrum.empty

    def collapsed(self) -> list[str]:
        s = self.spectrum
        return [] if s.empty else list(dict.fromkeys(s.loc[s["collapsed"], "model"]))


# ---------------------------------------------------------------------------------------------- render

_TAG = re.compile(r"\{%.*?%\}|\{#.*?#\}")


def keep_newlines(source: str) -> str:
    """Template lines: one holding only tags vanishes (``trim_blocks``); a line of text that ends with a
    tag keeps its newline (Jinja would drop it), so a sentence ending in ``{% endif %}`` still ends its
    line."""
    out = []
    for line in source.split("\n"):
        if line.rstrip().endswith("%}") and _TAG.sub("", line).strip():
            line = line.rstrip() + '{{ "" }}'
        out.append(line)
    return "\n".join(out)


def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    class Loader(PackageLoader):
        def get_source(self, environment, template):
            source, filename, uptodate = super().get_source(environment, template)
            return keep_newlines(source), filename, uptodate

    env = Environment(loader=Loader("repeval.report.tables", TEMPLATES), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters.update(num=num, signed=signed, pval=pval, span=span, thousands=thousands)
    env.globals.update(num=num, signed=signed, pval=pval, span=span, thousands=thousands, minus=minus,
                       EM_DASH=EM_DASH)
    return env


def _tidy(text: str) -> str:
    """Collapse the blank lines that template conditionals leave (at most one in a row), one final newline."""
    lines, blank = [], False
    for line in text.splitlines():
        if not line.strip():
            if not blank and lines:
                lines.append("")
            blank = True
            continue
        lines.append(line.rstrip())
        blank = False
    return "\n".join(lines).rstrip() + "\n"


def render_report(facts: Facts) -> tuple[str, str]:
    """(REPORT.md, index.html) for one dataset."""
    from .markdown import to_html

    env = environment()
    md = _tidy(env.get_template("report.md.j2").render(r=facts))
    body, toc = to_html(md)
    html = env.get_template("index.html.j2").render(r=facts, body=body, toc=toc, title=md.splitlines()[0].lstrip("# "))
    return md, html
