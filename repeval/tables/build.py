"""Records -> tidy table frames (one row per cell) and rank agreement with the paper; pure, no I/O
but reading records."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ..storage import read_json


EM_DASH = "—"
FORMATS = ("md", "tex", "csv")


@dataclass(frozen=True)
class Column:
    key: str            # column id in the CSV and in paper.paper_values
    label: str          # header text
    protocol: str
    metric: str
    tap: str | None     # None: the protocol's code tap, whichever tap its records carry
    fmt: str = ".2f"


@dataclass(frozen=True)
class TableSpec:
    number: int
    title: str
    columns: tuple[Column, ...]

    @property
    def name(self) -> str:
        return f"table{self.number}"

    @property
    def protocols(self) -> frozenset[str]:
        return frozenset(c.protocol for c in self.columns)


TABLE1 = TableSpec(1, "Non-linear classifier probe, test accuracy (%)", (
    Column("conv", "conv", "mlp", "accuracy", "conv"),
    Column("fc", "fc", "mlp", "accuracy", "fc"),
    Column("y", "y", "mlp", "accuracy", "y")))

TABLE4 = TableSpec(4, "Linear SVM accuracy (%), reconstruction, MINE and NDM", (
    Column("svm_conv", "SVM conv", "svm", "accuracy", "conv"),
    Column("svm_fc", "SVM fc", "svm", "accuracy", "fc"),
    Column("svm_y", "SVM y", "svm", "accuracy", "y"),
    Column("ssim", "SSIM", "recon", "ssim", None, ".3f"),
    Column("ms_ssim", "MS-SSIM", "recon", "ms_ssim", None, ".3f"),
    Column("mine", "MINE", "mine", "mi", None),
    Column("ndm", "NDM", "ndm", "ndm", None, ".3f")))

SPECS = {1: TABLE1, 4: TABLE4}
CSV_COLUMNS = ["dataset", "paper_dataset", "table", "row", "display", "model", "column", "column_label",
               "protocol", "tap", "metric", "mean", "std", "n", "seeds", "n_failed", "paper", "paper_std",
               "delta", "floor", "delta_floor"]
FLOOR_MODEL = "random"   # the seeded, untrained shared encoder: the floor every learned row must clear


# ---------------------------------------------------------------------------------------------- records

def load_records(results: Path, dataset: str) -> tuple[list[dict], list[str]]:
    """Every record under ``results/<dataset>/records/**.json``; unreadable files are reported, not fatal."""
    root = Path(results) / dataset / "records"
    records, problems = [], []
    for p in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            rec = read_json(p)
        except (OSError, ValueError) as e:
            problems.append(f"{p}: {type(e).__name__}: {e}")
            continue
        if not isinstance(rec, dict) or "protocol" not in rec or "model" not in rec:
            problems.append(f"{p}: not a repeval record")
            continue
        records.append(rec)
    return records, problems


def discover_datasets(results: Path) -> list[str]:
    root = Path(results)
    return sorted(d.name for d in root.iterdir() if (d / "records").is_dir()) if root.is_dir() else []


# ---------------------------------------------------------------------------------------------- build

def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _order_key(table: int, display: str) -> tuple:
    order = {paper.canon(n): i for i, n in enumerate(paper.row_order(table))}
    i = order.get(paper.canon(display))
    return (0, i, "") if i is not None else (1, 0, display.casefold())


def build_table(records: list[dict], spec: TableSpec, dataset: str,
                models: list[str] | None = None) -> pd.DataFrame:
    """One row per cell of ``spec`` for ``dataset``: ours (mean, sample std, n) beside the paper.

    Rows: our models with at least one record of the table's protocols (filtered by ``models``), and,
    when ``models`` is None, the paper's rows we have no record for (our cells then empty). A row is
    matched to the paper by its display name (:func:`repeval.paper.canon`). Columns with neither a
    record nor a paper number are dropped. Missing numbers are NaN (rendered as an em dash)."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("dataset", dataset) != dataset or r.get("protocol") not in spec.protocols:
            continue
        if models is not None and r["model"] not in models:
            continue
        by_model[r["model"]].append(r)
    display = {m: (rs[0].get("display") or m) for m, rs in by_model.items()}
    clash = Counter(paper.canon(d) for d in display.values())
    rows = [(d if clash[paper.canon(d)] == 1 else f"{d} [{m}]", m, d) for m, d in display.items()]
    if models is None:
        have = {paper.canon(d) for d in display.values()}
        rows += [(p, "", p) for p in paper.paper_rows(spec.number, dataset) if paper.canon(p) not in have]
    rows.sort(key=lambda t: (_order_key(spec.number, t[2]), t[0].casefold()))

    pv = paper.paper_values(spec.number, dataset)
    out = []
    for i, (label, model, disp) in enumerate(rows):
        for col in spec.columns:
            sel = [r for r in by_model.get(model, ())
                   if r["protocol"] == col.protocol and (col.tap is None or r.get("tap") == col.tap)]
            ok = [r for r in sel if r.get("success") and _finite((r.get("metrics") or {}).get(col.metric))]
            failed = [r for r in sel if not r.get("success") or
                      ((r.get("metrics") or {}).get(col.metric) is not None
                       and not _finite(r["metrics"][col.metric]))]
            vals = np.array([float(r["metrics"][col.metric]) for r in ok])
            p = pv.get((paper.canon(disp), col.key))
            mean = float(vals.mean()) if len(vals) else math.nan
            taps = sorted({r.get("tap", "") for r in sel})
            out.append({
                "dataset": dataset, "paper_dataset": paper.paper_dataset(dataset) or "",
                "table": spec.name, "row": i, "display": label, "model": model,
                "column": col.key, "column_label": col.label, "protocol": col.protocol,
                "tap": col.tap or ",".join(taps), "metric": col.metric,
                "mean": mean, "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan,
                "n": len(vals), "seeds": " ".join(str(s) for s in sorted(r.get("seed", 0) for r in ok)),
                "n_failed": len(failed), "_records": len(sel), "_disp": disp,
                "paper": p.mean if p else math.nan,
                "paper_std": p.std if p and p.std is not None else math.nan,
                "delta": mean - p.mean if p and len(vals) else math.nan})
    df = pd.DataFrame(out, columns=CSV_COLUMNS + ["_records", "_disp"])
    if df.empty:
        return df
    floor = df[df["model"] == FLOOR_MODEL].set_index("column")["mean"]
    df["floor"] = df["column"].map(floor).astype(float)
    df["delta_floor"] = df["mean"] - df["floor"]
    keep = [c.key for c in spec.columns
            if ((df["column"] == c.key) & ((df["n"] + df["n_failed"] > 0) | df["paper"].notna())).any()]
    return df[df["column"].isin(keep)].reset_index(drop=True)


def has_records(df: pd.DataFrame) -> bool:
    return not df.empty and bool((df["_records"] > 0).any())


# ---------------------------------------------------------------------------------------------- rank

def rank_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau-b (scipy.stats.kendalltau) between our values and the paper's, per dataset and
    column, over the models that have both. Undefined (NaN, with the reason) for fewer than two
    common models or when one side is constant."""
    from scipy.stats import kendalltau

    rows = []
    if df.empty:
        return pd.DataFrame(columns=["dataset", "table", "column", "n_common", "tau", "p_value", "models", "note"])
    for (ds, table, col), g in df.groupby(["dataset", "table", "column"], sort=False):
        both = g[g["mean"].notna() & g["paper"].notna()]
        tau = p = math.nan
        if not paper.paper_dataset(ds):
            note = f"undefined: the paper has no numbers for {ds}"
        elif g["paper"].isna().all():
            note = "undefined: the paper has no numbers in this column"
        elif len(both) < 2:
            note = f"undefined: {len(both)} model(s) in both ours and the paper (need 2)"
        elif both["mean"].nunique() < 2 or both["paper"].nunique() < 2:
            note = "undefined: all values tied on one side"
        else:
            res = kendalltau(both["mean"].to_numpy(), both["paper"].to_numpy())
            tau, p = float(res.statistic), float(res.pvalue)
            note = ""
        rows.append({"dataset": ds, "table": table, "column": col, "n_common": len(both), "tau": tau,
                     "p_value": p, "models": "; ".join(both["display"]), "note": note})
    return pd.DataFrame(rows)


def format_rank(rank: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in rank.iterrows():
        head = f"{r['dataset']} {r['table']} {r['column']}: "
        if math.isnan(r["tau"]):
            lines.append(head + r["note"])
        else:
            lines.append(head + f"tau = {r['tau']:+.3f} over {r['n_common']} models (p = {r['p_value']:.3g})")
    return lines


def format_floor(df: pd.DataFrame) -> list[str]:
    """Per column with a random-init cell: every other model's difference to it, largest first, and
    how many models are above it (for NDM, lower means more independent dimensions, not better)."""
    lines = []
    for col, g in df[df["floor"].notna()].groupby("column", sort=False):
        g = g[(g["model"] != FLOOR_MODEL) & g["delta_floor"].notna()].sort_values("delta_floor", ascending=False)
        if g.empty:
            continue
        fmt = ".3f" if g["metric"].iloc[0] in ("ssim", "ms_ssim", "ndm") else ".2f"
        cells = ", ".join(f"{d} {v:+{fmt}}" for d, v in zip(g["display"], g["delta_floor"]))
        lines.append(f"{g['dataset'].iloc[0]} {g['table'].iloc[0]} {col}: random init "
                     f"{g['floor'].iloc[0]:{fmt}}; {int((g['delta_floor'] > 0).sum())}/{len(g)} above; {cells}")
    return lines




# ---------------------------------------------------------------------------------------------- budget

PROTOCOL_SECONDS = ("mlp_s", "svm_s", "recon_s", "mine_s", "ndm_s")
SECONDS = ("train_s", "extract_s", *PROTOCOL_SECONDS, "other_s")        # summed into total_s
TIMING_COLUMNS = ["model", "display", *SECONDS, "total_s", "records"]


def timing_table(records: list[dict]) -> pd.DataFrame:
    """Compute budget per model from the records' ``timing_s`` (seconds of wall time).

    ``train_s`` and ``extract_s`` are the largest values any record of the model carries (a record
    written after a resumed or cached stage carries only what that process spent); protocol columns
    sum ``timing_s.protocol`` over the model's records. Records from processes that were paused or
    shared the CPU carry that wall time too: the table is an accounting, not a benchmark.
    """
    rows: dict[str, dict] = {}
    for r in records:
        t = r.get("timing_s") or {}
        row = rows.setdefault(r["model"], {"model": r["model"], "display": r.get("display") or r["model"],
                                           "records": 0, **{c: 0.0 for c in SECONDS}})
        row["train_s"] = max(row["train_s"], float(t.get("train") or 0.0))
        row["extract_s"] = max(row["extract_s"], float(t.get("extract") or 0.0))
        col = f"{r.get('protocol')}_s"
        row[col if col in PROTOCOL_SECONDS else "other_s"] += float(t.get("protocol") or 0.0)
        row["records"] += 1
    ordered = sorted(rows.values(), key=lambda row: _order_key(1, row["display"]))
    df = pd.DataFrame(ordered, columns=TIMING_COLUMNS)
    df["total_s"] = df[list(SECONDS)].sum(axis=1)
    total = {"model": "TOTAL", "display": "all models", "records": int(df["records"].sum()),
             **{c: float(df[c].sum()) for c in (*SECONDS, "total_s")}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)
