"""Table frames -> footnotes, GitHub Markdown, LaTeX (booktabs) and tidy CSV text (pure)."""
from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from .. import paper
from ...registry import PROTOCOLS
from .build import CSV_COLUMNS, EM_DASH, TableSpec, at_epoch, has_epochs, record_epoch
from .scales import cell_note, inert_settings, no_delta_note

# ---------------------------------------------------------------------------------------------- notes

def _training(rec: dict) -> dict | None:
    """The training settings of a record's encoder (shared training config + family config), or None
    for an encoder that was not trained."""
    enc = rec["config"]["encoder"]
    return {**enc["train"], **enc["config"]} if enc.get("kind") == "trained" else None


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
    return out + _encoder_note(have)


def _encoder_note(have: pd.DataFrame) -> str:
    """Which rows have several trained encoders (training seeds), and what their ± means."""
    many = have[have["encoders"] >= 2]
    if many.empty:
        return (" One trained encoder per row: ± is the protocol's seed spread, not training's."
                if (have["n"] > 1).any() else "")
    rows = "; ".join(f"{d} {int(g['encoders'].max())} (training seeds {g['train_seeds'].iloc[0]})"
                     for d, g in many.groupby("display", sort=False))
    return (f" Rows with several trained encoders: {rows}; their cells are the mean over encoders (each the "
            f"mean over its probe seeds) ± the sample std over training seeds, marked n=E×S (E encoders, S probe "
            f"seeds each); other rows have one encoder.")


def _flag_note(df: pd.DataFrame) -> str | None:
    parts = []
    n = int(df["not_converged"].sum())
    if n:
        parts.append(f"{NOT_CONVERGED} = not converged: a record of the cell says `converged: false` (the protocol "
                     f"stopped at its budget, not by its stopping rule) ({n} cell{'s' if n != 1 else ''})")
    n = int(df["degenerate"].sum())
    if n:
        parts.append(f"{DEGENERATE} = degenerate solution: a record of the cell says `degenerate: true` (e.g. the "
                     f"linear SVM's W ≈ 0 regime) ({n} cell{'s' if n != 1 else ''})")
    n = int(df["stale"].sum())
    if n:
        parts.append(f"{STALE} = stale: a record of the cell was computed by an older version of its family or "
                     f"protocol than the code's now; `repeval run --rerun MODEL/PROTOCOL` recomputes it (a plain "
                     f"run keeps it and says so) ({n} cell{'s' if n != 1 else ''})")
    n = int(df["mixed_encoders"].sum())
    if n:
        parts.append(f"{MIXED} = mixed encoders: the row's records of one training seed and epoch were computed on "
                     f"more than one set of weights (e.g. a retrained encoder evaluated by some protocols only); "
                     f"`repeval run --rerun MODEL` recomputes the row ({n} cell{'s' if n != 1 else ''})")
    return "Flags: " + "; ".join(parts) + "." if parts else None


def flag_legend(df: pd.DataFrame) -> str | None:
    """One line under a table printed on the console: what each mark in it means (only those present)."""
    if df.empty:
        return None
    parts = []
    if df["not_converged"].any():
        parts.append(f"{NOT_CONVERGED} not converged (stopped at its budget: a lower bound for a longer run)")
    if df["degenerate"].any():
        parts.append(f"{DEGENERATE} degenerate (e.g. the SVM's W ≈ 0: not the accuracy of a linear separator; "
                     "left out of τ and the significance counts)")
    if df["stale"].any():
        parts.append(f"{STALE} stale (computed by an older family or protocol version)")
    if df["mixed_encoders"].any():
        parts.append(f"{MIXED} mixed encoders (the row's records come from more than one set of weights)")
    if "_delta" in df and ((df["_delta"] == False) & df["paper"].notna()).any():   # noqa: E712
        parts.append("no Δ where the paper's scale differs (rank only)")
    return "Legend: " + "; ".join(parts) + "." if parts else None


def _epoch_note(used: list[dict], epoch: int | None) -> str | None:
    if epoch is None and not has_epochs(used):
        return None
    groups = _group_models([(str(record_epoch(r)), r.get("display") or r["model"]) for r in used])
    how = f"--epoch {epoch}; untrained encoders at 0" if epoch is not None else "each model's last"
    text = " | ".join(e + (f" [{', '.join(ms)}]" if len(groups) > 1 else " (every row)") for e, ms in groups)
    return f"Encoder training epoch ({how}): {text}."


def footnotes(df: pd.DataFrame, records: list[dict], spec: TableSpec, epoch: int | None = None) -> list[str]:
    """The footnotes of a table: data, metrics, the paper's numbers, seeds, flags, epochs, budget,
    protocol settings, failures and provenance, all read from the records that made the cells (at the
    epoch the table was built for, see :func:`repeval.report.tables.build.at_epoch`)."""
    used = [r for r in at_epoch(records, epoch, spec.protocols)
            if (r.get("model") in set(df["model"])) and r.get("dataset") in set(df["dataset"])]
    notes = []
    for ds in dict.fromkeys(df["dataset"]):
        ds_notes = sorted({r.get("dataset_note") or "" for r in used if r.get("dataset") == ds} - {""})
        text = f"Dataset: {ds}" + (f" ({'; '.join(ds_notes)})" if ds_notes else "") + "."
        pds = paper.paper_dataset(ds)
        if spec.paper and pds is None:
            text += f" The paper reports no numbers for {ds}: no paper column, no difference."
        elif spec.paper and pds != ds:
            text += (f" Compared with the paper's {paper.dataset_title(pds)} numbers: part of each "
                     "difference may come from the JPEG compression of this copy.")
        notes.append(text)
    shown = set(df["protocol"])
    cells = [spec.cells] if spec.cells else [
        cell_note(p, PROTOCOLS.get(p).report.footnote) for p in PROTOCOLS
        if p in shown and PROTOCOLS.get(p).report.footnote]
    if cells:
        notes.append("Cells: " + "; ".join(cells) + ".")
    ours = set(df.loc[df["_records"] > 0, "model"])
    notes += list(spec.notes) + [text for model, text in spec.row_notes if model in ours]
    if spec.paper and any(paper.paper_dataset(ds) for ds in df["dataset"]):
        notes.append(f"Paper: Hjelm et al., ICLR 2019, camera-ready Table {spec.paper} (the review version's "
                     "numbers differ); Δ = ours − paper (means). Rows the paper lacks follow its rows." + spec.paper_note)
        if "_delta" in df and (scale := no_delta_note(df)):
            notes.append(scale)
    elif not spec.paper:
        notes.append("The paper has no counterpart for these protocols: no paper column.")
    notes.append(_seed_note(df))
    for note in (_flag_note(df), _epoch_note(used, epoch)):
        if note:
            notes.append(note)

    trained = _group_models([("preset " + str(r.get("preset")) + "; " + _cfg_text(_training(r)),
                               r.get("display") or r["model"]) for r in used if _training(r)])
    untrained = list(dict.fromkeys(r.get("display") or r["model"] for r in used if not _training(r)))
    budget = [f"{t}" + (f" [{', '.join(ms)}]" if len(trained) > 1 else "") for t, ms in trained]
    if untrained:
        budget.append("not trained: " + ", ".join(untrained))
    if budget:
        notes.append("Training budget: " + " | ".join(budget) + ".")

    for proto in sorted({r["protocol"] for r in used}):
        cfgs = _group_models([(_cfg_text((r.get("config") or {}).get("protocol_config"),
                                         tuple(inert_settings(proto, (r.get("config") or {}).get("protocol_config")))),
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

NOT_CONVERGED, DEGENERATE, STALE, MIXED = "†", "‡", "§", "¶"
FLAGS = ("not_converged", "degenerate", "stale", "mixed_encoders")   # the marks' cell columns, in order


@dataclass(frozen=True)
class _Style:
    dash: str
    pm: str
    wrap: str                       # format string for a number cell, {} = content
    marks: tuple[str, str, str, str]    # FLAGS' marks
    sup: str                        # format string for a superscript, {} = its items joined by sep
    sep: str
    marks_in_sup: bool              # TeX: one superscript holds the marks and n
    times: str                      # n=E×S: E trained encoders, S probe seeds each


MD = _Style(EM_DASH, " ± ", "{}", (NOT_CONVERGED, DEGENERATE, STALE, MIXED), " <sup>{}</sup>", ", ", False, "×")
TEX = _Style("---", r" \pm ", "${}$", (r"\dagger", r"\ddagger", r"\S", r"\P"), "^{{{}}}", ",", True, r"\times ")


def _columns(df: pd.DataFrame) -> list[tuple[str, str, str, bool]]:
    """[(dataset, column key, label, has_paper)] in display order."""
    out = []
    for (ds, key), g in df.groupby(["dataset", "column"], sort=False):
        out.append((ds, key, g["column_label"].iloc[0], bool(g["paper"].notna().any())))
    return out


def _paper_width(spec: TableSpec, key: str, has_paper: bool) -> list[str]:
    """The sub-columns beside ours: paper and Δ, or the paper alone for a column ranked only."""
    if not has_paper:
        return []
    return ["paper", "Δ"] if spec.column(key).delta else ["paper"]


def _ours(cell: pd.Series | None, fmt: str, mode_n: int, st: _Style) -> str:
    if cell is None or math.isnan(cell["mean"]):
        return st.dash
    s = f"{cell['mean']:{fmt}}"
    if cell["n"] > 1:
        s += f"{st.pm}{cell['std']:{fmt}}"
    marks = [m for m, key in zip(st.marks, FLAGS) if cell[key]]
    enc, n = int(cell.get("encoders") or 1), int(cell["n"])
    if enc > 1:       # the ± is over encoders: say how many, and the probe seeds behind each
        sup = [f"n={enc}{st.times}{n // enc}" if n % enc == 0 else f"n={n}"]
    else:
        sup = [f"n={n}"] if n != mode_n else []
    if st.marks_in_sup:
        sup = marks + sup
    else:
        s += "".join(marks)
    if sup:
        s += st.sup.format(st.sep.join(sup))
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
    first = df.sort_values("row", kind="stable")
    labels = list(dict.fromkeys(first["display"]))
    body = []
    for lab in labels:
        line = []
        for ds, key, _, has_paper in cols:
            cell = idx.get((ds, lab, key))
            fmt = spec.column(key).fmt
            line.append(_ours(cell, fmt, modes.get((ds, key), 1), st))
            subs = _paper_width(spec, key, has_paper)
            if subs:
                line += [_paper(cell, fmt, st)] + ([_delta(cell, fmt, st)] if len(subs) > 1 else [])
        body.append(line)
    return labels, [(ds, lab, tuple(_paper_width(spec, key, hp))) for ds, key, lab, hp in cols], body


def table_title(df: pd.DataFrame, spec: TableSpec) -> str:
    names = ", ".join(paper.dataset_title(d) for d in dict.fromkeys(df["dataset"]))
    return f"Table {spec.number}: {spec.full_title(set(df['protocol']))}, {names}"


def _caption(df: pd.DataFrame, spec: TableSpec) -> str:
    names = ", ".join(paper.dataset_title(d) for d in dict.fromkeys(df["dataset"]))
    title = spec.full_title(set(df["protocol"]))
    if spec.paper:
        return f"{title}, {names}: ours beside Table {spec.paper} of Hjelm et al. (ICLR 2019)."
    return f"{title}, {names}: no counterpart in Hjelm et al. (ICLR 2019)."


def render_markdown(df: pd.DataFrame, spec: TableSpec, notes: list[str], rank: pd.DataFrame | None = None) -> str:
    labels, cols, body = _grid(df, spec, MD)
    multi = len({c[0] for c in cols}) > 1
    headers = ["Model"]
    for ds, lab, subs in cols:
        name = f"{paper.dataset_title(ds)} {lab}" if multi else lab
        headers += [name] + [f"{name} {sub}" for sub in subs]
    table = tabulate([[lab] + line for lab, line in zip(labels, body)], headers=headers, tablefmt="github",
                     disable_numparse=True, colalign=["left"] + ["right"] * (len(headers) - 1))
    out = [f"## {table_title(df, spec)}", "", table, "", "Notes:", ""]
    out += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    if rank is not None and len(rank) and rank["note"].str.startswith("undefined: the paper has no").all():
        out += ["", "Rank agreement with the paper: undefined, the paper has no numbers for this dataset."]
    elif rank is not None and len(rank):
        out += ["", "Rank agreement with the paper (Kendall's τ-b over the models in both):", ""]
        rows = [[r["dataset"], r["column"], r["n_common"],
                 EM_DASH if math.isnan(r["tau"]) else f"{r['tau']:+.3f}",
                 EM_DASH if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}",
                 "; ".join(t for t in (r["note"], f"‡ not ranked: {r['degenerate_excluded']}"
                                       if r.get("degenerate_excluded") else "") if t)]
                for _, r in rank.iterrows()]
        out.append(tabulate(rows, headers=["dataset", "column", "models", "τ", "p", "note"], tablefmt="github",
                            disable_numparse=True))
    return "\n".join(out) + "\n"


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_TEX_UNICODE = {"—": "---", "–": "--", "−": "$-$", "±": r"$\pm$", "β": r"$\beta$", "τ": r"$\tau$",
                "Δ": r"$\Delta$", "×": r"$\times$", "≤": r"$\le$", "≥": r"$\ge$", "’": "'", "‘": "`",
                "“": "``", "”": "''", "…": r"\ldots{}", "°": r"$^\circ$", "·": r"$\cdot$",
                "†": r"$\dagger$", "‡": r"$\ddagger$", "≈": r"$\approx$"}


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
    widths = [1 + len(subs) for _, _, subs in cols]
    n_cols = 1 + sum(widths)
    lines = [f"% {table_title(df, spec)}. Generated by `repeval table` from stored records; do not edit.",
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
    any_paper = any(subs for _, _, subs in cols)
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
        for _, _, subs in cols:
            sub += ["ours"] + [r"$\Delta$" if x == "Δ" else x for x in subs]
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
    """The tidy CSV: one row per cell, columns :data:`repeval.report.tables.build.CSV_COLUMNS` (the flags as
    True/False)."""
    return df[CSV_COLUMNS].to_csv(index=False, float_format="%.6g", lineterminator="\n")


