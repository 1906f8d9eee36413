"""Figures for ``repeval table`` (matplotlib, Agg backend, PNG, written atomically).

* :func:`plot_table`: one panel per table column; a dot per model (our mean, sample-std error bar) on
  an axis spanning the values (not from 0), the random-init floor as a dashed line, † / ‡ marks, and
  the paper's number as a black marker where it is on our scale, so a gap is visible at a glance;
  panels that say nothing (one value, saturated accuracies) are left out.
* :func:`plot_curves`: learning curves (a protocol's headline metric against the encoder's training
  epoch, a line per model, the seed spread as a band, the random-init floor as a horizontal line).
* :func:`plot_recon_grids`: the reconstruction grids that the ``recon`` protocol saves under
  ``results/<dataset>/recon/<model>.png``, collected in one figure.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import save_png  # noqa: E402
from .paper import dataset_title  # noqa: E402


SATURATED = 95.0   # %: a column whose every row is above this says nothing about the differences


def panel_says_nothing(g: pd.DataFrame, unit: str) -> str | None:
    """Why a panel of one column would say nothing (fewer than two values, or saturated accuracies),
    else None."""
    vals = g["mean"].dropna()
    if len(vals) < 2:
        return "fewer than two rows with a value"
    if unit == "%" and vals.min() >= SATURATED:
        lo, hi = f"{vals.min():.1f}", f"{vals.max():.1f}"
        return f"saturated: every row at {lo if lo == hi else f'{lo}–{hi}'} %"
    return None


def _limits(*series) -> tuple[float, float]:
    vals = pd.concat([pd.Series(s, dtype=float) for s in series]).dropna()
    lo, hi = float(vals.min()), float(vals.max())
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 0.01)
    return lo - pad, hi + pad


def plot_table(df: pd.DataFrame, spec, path: Path, title: str, floor_model: str = "random") -> Path | None:
    """Ours (dots, ± std) per model, one panel per (dataset, column), the axis spanning the values (not
    from 0), the random-init floor as a dashed line, † / ‡ beside flagged cells, and the paper's number
    (black diamond) where it is on our scale (a column compared by rank only, e.g. MINE, shows ours
    alone). Panels that say nothing (:func:`panel_says_nothing`) are left out; None when none is left."""
    from .tables.scales import unit

    panels = []
    for (ds, key), g in df.groupby(["dataset", "column"], sort=False):
        u = unit(g["protocol"].iloc[0], g["metric"].iloc[0])
        if panel_says_nothing(g, u) is None:
            panels.append((ds, key, g, u))
    if not panels:
        return None
    multi = df["dataset"].nunique() > 1
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    labels = list(dict.fromkeys(df.sort_values("row", kind="stable")["display"]))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.4 * ncol, 0.9 + 0.32 * len(labels) * nrow + 1.3 * nrow),
                             squeeze=False)
    used = set()
    for ax, (ds, key, g, u) in zip(axes.flat, panels):
        delta = bool(g["_delta"].iloc[0]) if "_delta" in g else True
        floor = g.loc[g["model"] == floor_model, "mean"].dropna()
        g = g.drop_duplicates("display").set_index("display").reindex(labels)
        ypos = list(range(len(labels)))
        ours = g["mean"].notna()
        ax.errorbar(g["mean"][ours], [i for i, h in zip(ypos, ours) if h], xerr=g["std"][ours].fillna(0),
                    fmt="o", color="tab:blue", markersize=5, elinewidth=1, capsize=2, zorder=3)
        used.add("ours")
        show_paper = delta and g["paper"].notna().any()
        if show_paper:
            has = g["paper"].notna()
            ax.scatter(g["paper"][has], [i for i, h in zip(ypos, has) if h], marker="D", color="black", s=18,
                       zorder=4)
            used.add("paper")
        elif g["paper"].notna().any():
            used.add("paper-other-scale")
        if len(floor):
            ax.axvline(float(floor.iloc[0]), color="gray", linestyle="--", linewidth=1, zorder=1)
            used.add("floor")
        lo, hi = _limits(g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0),
                         g["paper"] if show_paper else [], floor)
        ax.set_xlim(lo, hi)
        for i, (lab, r) in zip(ypos, g.iterrows()):
            if pd.isna(r["mean"]):
                ax.text(lo, i, " —", va="center", fontsize=8, color="gray")
                used.add("missing")
                continue
            marks = ("†" if bool(r["not_converged"]) else "") + ("‡" if bool(r["degenerate"]) else "")
            if marks:
                ax.annotate(marks, (r["mean"] + (0 if pd.isna(r["std"]) else r["std"]), i), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=9, color="tab:red")
                used.update(m for m in marks)
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        col_label = g["column_label"].dropna().iloc[0]
        ax.set_title(f"{dataset_title(ds)} {col_label}" if multi else col_label, fontsize=10)
        ax.set_xlabel(u if u else "score", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    entries = [("ours", Line2D([], [], marker="o", color="tab:blue", linestyle="none", markersize=5,
                               label="ours (mean ± std)")),
               ("paper", Line2D([], [], marker="D", color="black", linestyle="none", markersize=5, label="paper")),
               ("floor", Line2D([], [], color="gray", linestyle="--", label="random-init floor")),
               ("†", Line2D([], [], marker="$†$", color="tab:red", linestyle="none", markersize=7,
                            label="not converged")),
               ("‡", Line2D([], [], marker="$‡$", color="tab:red", linestyle="none", markersize=7,
                            label="degenerate")),
               ("missing", Line2D([], [], marker="$—$", color="gray", linestyle="none", markersize=8,
                                  label="no value"))]
    handles = [h for k, h in entries if k in used]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    return save_png(fig, path)


def metric_label(protocol: str, metric: str) -> str:
    """A curve panel's name: the protocol's display name, and the metric when it has several."""
    from ..registry import PROTOCOLS
    if protocol not in PROTOCOLS:
        return f"{protocol} {metric}"
    spec = PROTOCOLS.get(protocol)
    k = re.fullmatch(r"accuracy_k(\d+)", metric)
    if k:
        return f"{spec.display}, k = {k.group(1)}"
    return spec.display if len(spec.report.metrics) == 1 else f"{spec.display} {metric}"


def plot_curves(curves: pd.DataFrame, path: Path, title: str, floor_model: str = "random") -> Path | None:
    """One panel per (protocol, metric) row and tap column of ``curves``
    (:func:`repeval.report.tables.curves.curve_table`): mean against epoch per model, mean ± std as a band
    where there are several seeds, ``floor_model`` as a dashed horizontal line (± std band). Every
    panel shares one epoch axis, ticked at the evaluated epochs, so a protocol run only at the last
    epoch sits where it belongs on the curve. None (nothing drawn) when no model has two epochs: a
    curve of single points says nothing (a protocol evaluated at one epoch only gets no row)."""
    from .tables.scales import unit

    trained = curves[curves["model"] != floor_model]
    if trained.empty or trained.groupby("model")["epoch"].nunique().max() < 2:
        return None
    # a (protocol, metric) run at one encoder epoch only (e.g. the linear probe at the last) is a column of
    # single points: its numbers are in Table X, not drawn here
    multi = trained.groupby(["protocol", "metric", "model"])["epoch"].nunique().groupby(level=[0, 1]).max()
    series = [s for s in dict.fromkeys(zip(curves["protocol"], curves["metric"])) if multi.get(s, 0) >= 2]
    taps = list(dict.fromkeys(curves["tap"]))
    models = [m for m in dict.fromkeys(curves["model"]) if m != floor_model]
    names = dict(zip(curves["model"], curves["display"]))
    colors = {m: plt.get_cmap("tab20" if len(models) > 10 else "tab10")(i % 20) for i, m in enumerate(models)}
    fig, axes = plt.subplots(len(series), len(taps), figsize=(4.2 * len(taps), 3.2 * len(series) + 0.8),
                             squeeze=False, sharex=True)
    epochs = sorted(trained["epoch"].dropna().unique())
    drawn, band, floor_drawn = set(), False, False
    for (proto, metric), row in zip(series, axes):
        u = unit(proto, metric)
        for tap, ax in zip(taps, row):
            g = curves[(curves["protocol"] == proto) & (curves["metric"] == metric) & (curves["tap"] == tap)]
            ax.set_title(f"{metric_label(proto, metric)}, {tap}", fontsize=10)
            if g.empty:
                ax.text(0.5, 0.5, "no records", ha="center", va="center", color="gray", transform=ax.transAxes)
                ax.axis("off")
                continue
            floor = g[g["model"] == floor_model]
            if len(floor):
                f = floor.iloc[-1]
                ax.axhline(f["mean"], color="gray", linestyle="--", linewidth=1)
                floor_drawn = True
                if not math.isnan(f["std"]):
                    ax.axhspan(f["mean"] - f["std"], f["mean"] + f["std"], color="gray", alpha=0.15, linewidth=0)
            for m in models:
                c = g[g["model"] == m].sort_values("epoch")
                if c.empty:
                    continue
                ax.plot(c["epoch"], c["mean"], marker="o", markersize=3, color=colors[m], linewidth=1.2)
                drawn.add(m)
                has = c["std"].notna()
                if has.any():
                    band = True
                    ax.fill_between(c["epoch"][has], (c["mean"] - c["std"])[has], (c["mean"] + c["std"])[has],
                                    color=colors[m], alpha=0.2, linewidth=0)
            ax.set_ylabel(f"test accuracy ({u})" if u == "%" else (u or "score"), fontsize=8)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("encoder training epoch", fontsize=8)
    if epochs:
        axes[0][0].set_xticks(epochs)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    handles = [Line2D([], [], color=colors[m], marker="o", markersize=3, label=names[m]) for m in models if m in drawn]
    if floor_drawn:
        handles.append(Line2D([], [], color="gray", linestyle="--", label=f"{names[floor_model]} (floor)"))
    if band:
        handles.append(Patch(color="gray", alpha=0.2, label="mean ± std over seeds"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    return save_png(fig, path)


def plot_recon_grids(folder: Path, path: Path, names: dict[str, str] | None = None) -> Path | None:
    """All ``folder/*.png`` (seed 0's, ``<model>.png``, when present; the runner names other seeds
    ``<model>-seed<k>.png``) in one figure titled by display name; None when there are none."""
    files = sorted(Path(folder).glob("*.png")) if Path(folder).is_dir() else []
    first = [f for f in files if not re.search(r"-seed\d+$", f.stem)]
    files = first or files          # one grid per model: seed 0's when the protocol ran several seeds
    if not files:
        return None
    names = names or {}
    images = {}
    for f in files:
        try:
            images[f] = plt.imread(f)
        except (OSError, ValueError, SyntaxError) as e:
            images[f] = f"{f.name}: unreadable ({type(e).__name__})"
    shapes = [im.shape for im in images.values() if not isinstance(im, str)]
    aspect = max((h / w for h, w, *_ in shapes), default=1.0)
    ncol = 1 if aspect < 0.6 else min(3, len(files))       # wide grids (inputs over outputs): one column
    nrow = math.ceil(len(files) / ncol)
    panel_w = 9.0 if ncol == 1 else 4.5
    fig, axes = plt.subplots(nrow, ncol, figsize=(panel_w * ncol, (panel_w * aspect + 0.5) * nrow + 0.6),
                             squeeze=False)
    for ax, f in zip(axes.flat, files):
        im = images[f]
        if isinstance(im, str):
            ax.text(0.5, 0.5, im, ha="center", fontsize=8)
        else:
            ax.imshow(im)
        base, _, suffix = f.stem.partition("-seed")       # <model>.png or <model>-seed<k>.png
        title = names.get(f.stem) or (names.get(base, base) + (f" (seed {suffix})" if suffix else ""))
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    for ax in list(axes.flat)[len(files):]:
        ax.axis("off")
    fig.suptitle("Reconstructions from the frozen code (protocol recon): inputs and decoder outputs",
                 fontsize=11)
    fig.tight_layout()
    return save_png(fig, path)
