"""``repeval table``: Tables 1 and 4 of the paper rebuilt from stored records, beside the paper's numbers.

Only records are read (``results/<dataset>/records/**.json``, written by :mod:`repeval.runner`);
nothing is recomputed. Three stages, each a plain function:

1. :func:`build_table`: records -> a tidy frame, one row per cell (model x column) holding our
   mean, sample std and seed count, the paper's number and the difference (pure, no I/O);
2. :func:`render_markdown`, :func:`render_latex`, :func:`render_csv` and :func:`rank_agreement`
   (Kendall's tau between our ranking of the models and the paper's, per column);
3. :func:`cmd_table` writes ``table1.{md,tex,csv}``, ``table4.{md,tex,csv}``,
   ``rank_agreement.csv`` and the plots atomically under ``results/<dataset>/``.

Table 1 (DIM_SPEC.md protocol 1): non-linear probe (protocol ``mlp``, metric ``accuracy``) on the
conv, fc and y taps. Table 4: linear SVM (``svm``/``accuracy``, five seeds) on the three taps, then
reconstruction SSIM (``recon``/``ssim``; the paper's "MS-SSIM" column is single-scale SSIM in the
released code, DIM_SPEC.md protocol 3), our true ``ms_ssim`` where the recon protocol reports it,
MINE (``mine``/``mi``) and NDM (``ndm``/``ndm``). A missing cell is an em dash, never 0.
"""
from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from . import paper
from .storage import atomic_write_text, read_json

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
               "delta"]


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


# ---------------------------------------------------------------------------------------------- notes

def _cfg_text(d: dict | None, skip: tuple[str, ...] = ()) -> str:
    if not d:
        return "defaults"
    parts = []
    for k in sorted(d):
        if k in skip:
            continue
        v = d[k]
        if isinstance(v, list):
            v = "(" + ", ".join(str(x) for x in v) + ")"
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _group_models(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """[(text, model)] -> [(text, [models])] in first-seen order."""
    groups: dict[str, list[str]] = {}
    for text, model in pairs:
        lst = groups.setdefault(text, [])
        if model not in lst:
            lst.append(model)
    return list(groups.items())


def _seed_note(df: pd.DataFrame) -> str:
    have = df[df["n"] > 0]
    if have.empty:
        return "Seeds: no cell has a value."
    by_n: dict[int, list[str]] = defaultdict(list)
    differs = False
    for ds, key in dict.fromkeys(zip(df["dataset"], df["column"])):     # table column order
        g = have[(have["dataset"] == ds) & (have["column"] == key)]
        if g.empty:
            continue
        mode = int(g["n"].mode().max())
        differs |= bool((g["n"] != mode).any())
        label = g["column_label"].iloc[0]
        if label not in by_n[mode]:
            by_n[mode].append(label)
    text = "; ".join(f"n = {n} seed{'s' if n != 1 else ''} per cell ({', '.join(cols)})"
                     for n, cols in sorted(by_n.items(), reverse=True))
    out = f"Seeds: {text}."
    if (have["n"] > 1).any():
        out += " Cells with n > 1 show mean ± sample std (ddof = 1) over seeds."
    if differs:
        out += " A superscript n marks a cell whose seed count differs from its column's."
    return out


def footnotes(df: pd.DataFrame, records: list[dict], spec: TableSpec) -> list[str]:
    """The footnotes of a table: data, metrics, the paper's numbers, seeds, budget, protocol settings,
    failures and provenance, all read from the records that made the cells."""
    used = [r for r in records if r.get("protocol") in spec.protocols
            and (r.get("model") in set(df["model"])) and r.get("dataset") in set(df["dataset"])]
    notes = []
    for ds in dict.fromkeys(df["dataset"]):
        ds_notes = sorted({r.get("dataset_note") or "" for r in used if r.get("dataset") == ds} - {""})
        text = f"Dataset: {ds}" + (f" ({'; '.join(ds_notes)})" if ds_notes else "") + "."
        pds = paper.paper_dataset(ds)
        if pds is None:
            text += f" The paper reports no numbers for {ds}: no paper column, no difference."
        elif pds != ds:
            text += (f" Compared with the paper's {paper.dataset_title(pds)} numbers: part of each "
                     "difference may come from the JPEG compression of this copy.")
        notes.append(text)
    if spec.number == 1:
        notes.append("Cells: test accuracy (%) of the non-linear probe (protocol `mlp`, metric `accuracy`: "
                     "accuracy after the last epoch; the paper averaged test accuracy over the last 100 "
                     "epochs) on frozen features at conv (last conv layer), fc (1024 units) and y (64-d code).")
    else:
        notes.append("Cells: SVM = linear SVM test accuracy (%) (protocol `svm`, metric `accuracy`); SSIM = "
                     "protocol `recon`, metric `ssim`, compared with the paper's column \"MS-SSIM\", which the "
                     "released code computes as single-scale SSIM (DIM_SPEC.md, protocol 3); MS-SSIM = our "
                     "metric `ms_ssim` (no paper counterpart); MINE = protocol `mine`, metric `mi` (nats); "
                     "NDM = protocol `ndm`, metric `ndm`.")
        notes.append("The paper's Table 4 row \"DIM(L)\" does not name its estimator: we compare it with our "
                     "DIM(L) (infoNCE), the paper's default estimator.")
    if any(paper.paper_dataset(ds) for ds in df["dataset"]):
        notes.append(f"Paper: Hjelm et al., ICLR 2019, camera-ready Table {spec.number} (the review version's "
                     "numbers differ); Δ = ours − paper (means). Rows the paper lacks follow its rows."
                     + (" Paper SVM std: over five runs." if spec.number == 4 else ""))
    notes.append(_seed_note(df))

    trained = _group_models([
        ("preset " + str(r["config"].get("preset")) + "; " + _cfg_text(r["config"].get("train")),
         r.get("display") or r["model"]) for r in used if (r.get("config") or {}).get("train")])
    untrained = list(dict.fromkeys(r.get("display") or r["model"] for r in used
                                   if not (r.get("config") or {}).get("train")))
    budget = [f"{t}" + (f" [{', '.join(ms)}]" if len(trained) > 1 else "") for t, ms in trained]
    if untrained:
        budget.append("not trained: " + ", ".join(untrained))
    if budget:
        notes.append("Training budget: " + " | ".join(budget) + ".")

    for proto in sorted({r["protocol"] for r in used}):
        cfgs = _group_models([(_cfg_text((r.get("config") or {}).get("protocol_config")),
                               r.get("display") or r["model"]) for r in used if r["protocol"] == proto])
        text = " | ".join(t + (f" [{', '.join(ms)}]" if len(cfgs) > 1 else "") for t, ms in cfgs)
        notes.append(f"Protocol `{proto}`: {text}.")

    failed = [r for r in used if not r.get("success")]
    if failed:
        shown = "; ".join(f"{r.get('display') or r['model']}/{r['protocol']}/{r.get('tap')}/seed{r.get('seed')}: "
                          f"{r.get('error') or 'failed'}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        notes.append(f"Failed runs excluded ({len(failed)}): {shown}{more}.")

    vers: dict[str, set] = defaultdict(set)
    commits, devices = set(), set()
    for r in used:
        prov = r.get("provenance") or {}
        for k, v in (prov.get("versions") or {}).items():
            vers[k].add(str(v))
        commits.add(str(prov.get("git_commit", "unknown")))
        devices.add(str((prov.get("machine") or {}).get("device", "unknown")))
    if used:
        soft = ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(vers.items()))
        short = ", ".join(sorted(c[:12] + ("+dirty" if c.endswith("+dirty") else "") for c in commits))
        notes.append(f"Provenance: {len(used)} stored records; commit {short}; device {', '.join(sorted(devices))}; "
                     f"{soft}.")
    return notes


# ---------------------------------------------------------------------------------------------- render

@dataclass(frozen=True)
class _Style:
    dash: str
    pm: str
    minus: str
    wrap: str           # format string for a number cell, {} = content
    sup: str            # format string for a superscript, {} = n


MD = _Style(EM_DASH, " ± ", "-", "{}", " <sup>n={}</sup>")
TEX = _Style("---", r" \pm ", "-", "${}$", "^{{n={}}}")


def _columns(df: pd.DataFrame) -> list[tuple[str, str, str, bool]]:
    """[(dataset, column key, label, has_paper)] in display order."""
    out = []
    for (ds, key), g in df.groupby(["dataset", "column"], sort=False):
        out.append((ds, key, g["column_label"].iloc[0], bool(g["paper"].notna().any())))
    return out


def _fmt(spec: TableSpec, key: str) -> str:
    return next(c.fmt for c in spec.columns if c.key == key)


def _ours(cell: pd.Series | None, fmt: str, mode_n: int, st: _Style) -> str:
    if cell is None or math.isnan(cell["mean"]):
        return st.dash
    s = f"{cell['mean']:{fmt}}"
    if cell["n"] > 1:
        s += f"{st.pm}{cell['std']:{fmt}}"
    if cell["n"] != mode_n:
        s += st.sup.format(cell["n"])
    return st.wrap.format(s)


def _paper(cell: pd.Series, fmt: str, st: _Style) -> str:
    if cell is None or math.isnan(cell["paper"]):
        return st.dash
    fmt = ".2f"   # the paper prints two decimals; do not suggest more precision than it has
    s = f"{cell['paper']:{fmt}}"
    if not math.isnan(cell["paper_std"]):
        s += f"{st.pm}{cell['paper_std']:{fmt}}"
    return st.wrap.format(s)


def _delta(cell: pd.Series, fmt: str, st: _Style) -> str:
    if cell is None or math.isnan(cell["delta"]):
        return st.dash
    return st.wrap.format(f"{cell['delta']:+{fmt}}")


def _grid(df: pd.DataFrame, spec: TableSpec, st: _Style) -> tuple[list[str], list[tuple], list[list[str]]]:
    """Row labels, column descriptors [(dataset, label, has_paper)], and cell strings per row."""
    cols = _columns(df)
    idx = {(r["dataset"], r["display"], r["column"]): r for _, r in df.iterrows()}
    modes = {}
    for (ds, key), g in df[df["n"] > 0].groupby(["dataset", "column"], sort=False):
        modes[(ds, key)] = int(g["n"].mode().max())
    disp = dict(zip(df["display"], df["_disp"]))
    labels = sorted(disp, key=lambda d: (_order_key(spec.number, disp[d]), d))
    body = []
    for lab in labels:
        line = []
        for ds, key, _, has_paper in cols:
            cell = idx.get((ds, lab, key))
            fmt = _fmt(spec, key)
            line.append(_ours(cell, fmt, modes.get((ds, key), 1), st))
            if has_paper:
                line += [_paper(cell, fmt, st), _delta(cell, fmt, st)]
        body.append(line)
    return labels, [(ds, lab, hp) for ds, _, lab, hp in cols], body


def _title(df: pd.DataFrame, spec: TableSpec) -> str:
    names = ", ".join(paper.dataset_title(d) for d in dict.fromkeys(df["dataset"]))
    return f"Table {spec.number}: {spec.title}, {names}"


def _caption(df: pd.DataFrame, spec: TableSpec) -> str:
    names = ", ".join(paper.dataset_title(d) for d in dict.fromkeys(df["dataset"]))
    return f"{spec.title}, {names}: ours beside Table {spec.number} of Hjelm et al. (ICLR 2019)."


def render_markdown(df: pd.DataFrame, spec: TableSpec, notes: list[str], rank: pd.DataFrame | None = None) -> str:
    labels, cols, body = _grid(df, spec, MD)
    multi = len({c[0] for c in cols}) > 1
    headers = ["Model"]
    for ds, lab, hp in cols:
        name = f"{paper.dataset_title(ds)} {lab}" if multi else lab
        headers += [name] + ([f"{name} paper", f"{name} Δ"] if hp else [])
    table = tabulate([[lab] + line for lab, line in zip(labels, body)], headers=headers, tablefmt="github",
                     disable_numparse=True, colalign=["left"] + ["right"] * (len(headers) - 1))
    out = [f"## {_title(df, spec)}", "", table, "", "Notes:", ""]
    out += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    if rank is not None and len(rank) and rank["note"].str.startswith("undefined: the paper has no").all():
        out += ["", "Rank agreement with the paper: undefined, the paper has no numbers for this dataset."]
    elif rank is not None and len(rank):
        out += ["", "Rank agreement with the paper (Kendall's τ-b over the models in both):", ""]
        rows = [[r["dataset"], r["column"], r["n_common"],
                 EM_DASH if math.isnan(r["tau"]) else f"{r['tau']:+.3f}",
                 EM_DASH if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}", r["note"]]
                for _, r in rank.iterrows()]
        out.append(tabulate(rows, headers=["dataset", "column", "models", "τ", "p", "note"], tablefmt="github",
                            disable_numparse=True))
    return "\n".join(out) + "\n"


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_TEX_UNICODE = {"—": "---", "–": "--", "−": "$-$", "±": r"$\pm$", "β": r"$\beta$", "τ": r"$\tau$",
                "Δ": r"$\Delta$", "×": r"$\times$", "≤": r"$\le$", "≥": r"$\ge$", "’": "'", "‘": "`",
                "“": "``", "”": "''", "…": r"\ldots{}", "°": r"$^\circ$", "·": r"$\cdot$"}


def tex_escape(text: str) -> str:
    """Plain text -> LaTeX that pdflatex compiles: specials escaped, known Unicode mapped, `code` ->
    \\texttt, any other non-ASCII character transliterated (or replaced by '?')."""
    s = "".join(_TEX_ESCAPE.get(ch, ch) for ch in text)
    s = "".join(_TEX_UNICODE.get(ch, ch) for ch in s)
    s = re.sub(r"`([^`]*)`", r"\\texttt{\1}", s)
    out = []
    for ch in s:
        if ord(ch) < 128:
            out.append(ch)
        else:
            t = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(t or "?")
    return "".join(out)


def render_latex(df: pd.DataFrame, spec: TableSpec, notes: list[str]) -> str:
    """A booktabs ``table`` float, ready for ``\\input`` (needs ``\\usepackage{booktabs}``)."""
    labels, cols, body = _grid(df, spec, TEX)
    multi = len({c[0] for c in cols}) > 1
    widths = [3 if hp else 1 for _, _, hp in cols]
    n_cols = 1 + sum(widths)
    lines = [f"% {_title(df, spec)}. Generated by `repeval table` from stored records; do not edit.",
             r"% Needs \usepackage{booktabs}.",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{tex_escape(_caption(df, spec))}}}",
             rf"\label{{tab:repeval-{spec.name}-{re.sub(r'[^A-Za-z0-9-]', '-', '-'.join(dict.fromkeys(df['dataset'])))}}}",
             r"\begin{tabular}{l" + "r" * (n_cols - 1) + "}", r"\toprule"]
    if multi:
        groups, start = [], 2
        for ds in dict.fromkeys(c[0] for c in cols):
            w = sum(wd for (d, _, _), wd in zip(cols, widths) if d == ds)
            groups.append((tex_escape(paper.dataset_title(ds)), start, w))
            start += w
        lines.append(" & " + " & ".join(rf"\multicolumn{{{w}}}{{c}}{{{t}}}" for t, _, w in groups) + r" \\")
        lines.append("".join(rf"\cmidrule(lr){{{s}-{s + w - 1}}}" for _, s, w in groups))
    any_paper = any(hp for _, _, hp in cols)
    if any_paper:
        head, rules, start = [], [], 2
        for (_, lab, hp), w in zip(cols, widths):
            head.append(rf"\multicolumn{{{w}}}{{c}}{{{tex_escape(lab)}}}" if w > 1 else tex_escape(lab))
            if w > 1:
                rules.append(rf"\cmidrule(lr){{{start}-{start + w - 1}}}")
            start += w
        lines.append(" & " + " & ".join(head) + r" \\")
        if rules:
            lines.append("".join(rules))
        sub = []
        for _, _, hp in cols:
            sub += ["ours", "paper", r"$\Delta$"] if hp else ["ours"]
        lines.append("Model & " + " & ".join(sub) + r" \\")
    else:
        lines.append("Model & " + " & ".join(tex_escape(lab) for _, lab, _ in cols) + r" \\")
    lines.append(r"\midrule")
    for lab, line in zip(labels, body):
        lines.append(tex_escape(lab) + " & " + " & ".join(line) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
              r"\begin{minipage}{\linewidth}\footnotesize"]
    lines += [f"({i}) {tex_escape(n)}\\par" for i, n in enumerate(notes, 1)]
    lines += [r"\end{minipage}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(df: pd.DataFrame) -> str:
    return df[CSV_COLUMNS].to_csv(index=False, float_format="%.6g", lineterminator="\n")


# ---------------------------------------------------------------------------------------------- command

def _err(msg: str) -> int:
    print(f"repeval: error: {msg}", file=sys.stderr)
    return 2


def _write(path: Path, text: str, written: list[Path]) -> None:
    atomic_write_text(path, text)
    written.append(path)


def _emit(df: pd.DataFrame, records: list[dict], spec: TableSpec, out: Path, formats: list[str],
          plots: bool, written: list[Path]) -> pd.DataFrame:
    notes = footnotes(df, records, spec)
    rank = rank_agreement(df)
    if "md" in formats:
        _write(out / f"{spec.name}.md", render_markdown(df, spec, notes, rank), written)
    if "tex" in formats:
        _write(out / f"{spec.name}.tex", render_latex(df, spec, notes), written)
    if "csv" in formats:
        _write(out / f"{spec.name}.csv", render_csv(df), written)
    if plots:
        from .plots import plot_table
        written.append(plot_table(df, spec, out / f"{spec.name}.png", _title(df, spec)))
    return rank


def cmd_table(args) -> int:
    """Build Tables 1 and 4 per dataset from stored records; see the module docstring."""
    formats = [f.strip() for f in (args.format or "").split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        return _err(f"--format: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    results = Path(args.results)
    named = [d.strip() for item in (args.dataset or []) for d in item.split(",") if d.strip()]
    datasets = list(dict.fromkeys(named or discover_datasets(results)))
    if not datasets:
        return _err(f"no records under {results}/<dataset>/records (run `repeval run` first)")
    loaded = {}
    for ds in datasets:
        recs, problems = load_records(results, ds)
        for p in problems:
            print(f"repeval: warning: skipping unreadable record {p}", file=sys.stderr)
        if not recs:
            return _err(f"no records for dataset '{ds}' under {results / ds / 'records'}")
        loaded[ds] = recs

    plots = not args.no_plots
    written: list[Path] = []
    ranks, t1_frames = [], []
    for ds, recs in loaded.items():
        out = Path(args.out) if args.out and len(datasets) == 1 else (
            Path(args.out) / ds if args.out else results / ds)
        ds_ranks = []
        for spec in (TABLE1, TABLE4):
            df = build_table(recs, spec, ds)
            if not has_records(df):
                print(f"{ds}: no records of {', '.join(sorted(spec.protocols))}: {spec.name} skipped")
                continue
            print(f"\n{render_markdown(df, spec, []).split(chr(10) + 'Notes:')[0].rstrip()}")
            ds_ranks.append(_emit(df, recs, spec, out, formats, plots, written))
            if spec is TABLE1 and paper.paper_dataset(ds):
                t1_frames.append(df)
        if ds_ranks and "csv" in formats:
            _write(out / "rank_agreement.csv",
                   pd.concat(ds_ranks).to_csv(index=False, float_format="%.6g", lineterminator="\n"), written)
        ranks += ds_ranks
        if plots:
            from .plots import plot_recon_grids
            names = {r["model"]: r.get("display") or r["model"] for r in recs}
            p = plot_recon_grids(results / ds / "recon", out / "recon_grids.png", names)
            if p is None:
                print(f"{ds}: no reconstruction grids under {results / ds / 'recon'}: recon_grids.png skipped")
            else:
                written.append(p)
    if len(t1_frames) > 1:   # the paper's layout: one Table 1, a column group per CIFAR dataset
        both = pd.concat(t1_frames, ignore_index=True)
        all_recs = [r for recs in loaded.values() for r in recs]
        _emit(both, all_recs, TABLE1, Path(args.out) if args.out else results, formats, plots, written)
    if ranks:
        print("\nRank agreement with the paper (Kendall's tau-b, our ranking vs the paper's):")
        for line in format_rank(pd.concat(ranks)):
            print("  " + line)
    print("\nwritten:")
    for p in written:
        print(f"  {p}")
    return 0


def print_tables(results: Path, dataset: str, models: list[str] | None = None) -> None:
    """The tables (no footnotes) on stdout: what ``repeval run`` prints at its end."""
    recs, _ = load_records(results, dataset)
    shown = False
    for spec in (TABLE1, TABLE4):
        df = build_table(recs, spec, dataset, models)
        if has_records(df):
            print("\n" + render_markdown(df, spec, []).split("\nNotes:")[0].rstrip())
            shown = True
    if not shown:
        print(f"(no Table 1 / Table 4 records for {dataset})")
    else:
        print(f"\n(footnotes, paper comparison files and plots: repeval table --dataset {dataset} "
              f"--results {results})")
