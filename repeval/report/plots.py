"""Figures for ``repeval table`` (matplotlib, Agg backend, PNG, written atomically).

* :func:`plot_table`: one panel per table column; a bar per model (our mean, sample-std error bar)
  and the paper's number as a black marker on the same model, so a gap is visible at a glance.
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


def plot_table(df: pd.DataFrame, spec, path: Path, title: str) -> Path:
    """Ours (bars, ± std) vs the paper (black diamonds) per model, one panel per (dataset, column)."""
    panels = list(df.groupby(["dataset", "column"], sort=False))
    multi = df["dataset"].nunique() > 1
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    labels = list(dict.fromkeys(df.sort_values("row", kind="stable")["display"]))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 0.9 + 0.32 * len(labels) * nrow + 1.2 * nrow),
                             squeeze=False)
    for ax, ((ds, _), g) in zip(axes.flat, panels):
        g = g.set_index("display").reindex(labels)
        ypos = range(len(labels))
        ax.barh(list(ypos), g["mean"].fillna(0), xerr=g["std"].fillna(0),
                color=["tab:blue" if v else "none" for v in g["mean"].notna()], alpha=0.8,
                error_kw={"elinewidth": 1, "capsize": 2})
        has_paper = g["paper"].notna()
        if has_paper.any():
            ax.scatter(g["paper"][has_paper], [i for i, h in zip(ypos, has_paper) if h], marker="D",
                       color="black", s=18, zorder=3)
        for i, missing in zip(ypos, g["mean"].isna()):
            if missing:
                ax.text(0, i, " —", va="center", fontsize=8, color="gray")
        ax.set_yticks(list(ypos))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        col_label = g["column_label"].dropna().iloc[0]
        ax.set_title(f"{dataset_title(ds)} {col_label}" if multi else col_label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    handles = [Patch(color="tab:blue", alpha=0.8, label="ours (mean ± std)"),
               Line2D([], [], marker="D", color="black", linestyle="none", markersize=5, label="paper"),
               Line2D([], [], marker="$—$", color="gray", linestyle="none", markersize=8, label="no value")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    return save_png(fig, path)


def plot_curves(curves: pd.DataFrame, path: Path, title: str, floor_model: str = "random") -> Path:
    """One panel per (protocol, metric) row and tap column of ``curves``
    (:func:`repeval.report.tables.curves.curve_table`): mean against epoch per model, mean ± std as a band
    where there are several seeds, ``floor_model`` as a dashed horizontal line (± std band). Every
    panel shares one epoch axis, ticked at the evaluated epochs, so a protocol run only at the last
    epoch sits where it belongs on the curve."""
    series = list(dict.fromkeys(zip(curves["protocol"], curves["metric"])))
    taps = list(dict.fromkeys(curves["tap"]))
    models = [m for m in dict.fromkeys(curves["model"]) if m != floor_model]
    names = dict(zip(curves["model"], curves["display"]))
    colors = {m: plt.get_cmap("tab20" if len(models) > 10 else "tab10")(i % 20) for i, m in enumerate(models)}
    fig, axes = plt.subplots(len(series), len(taps), figsize=(4.2 * len(taps), 3.2 * len(series) + 0.8),
                             squeeze=False, sharex=True)
    epochs = sorted(curves.loc[curves["model"] != floor_model, "epoch"].dropna().unique())
    for (proto, metric), row in zip(series, axes):
        for tap, ax in zip(taps, row):
            g = curves[(curves["protocol"] == proto) & (curves["metric"] == metric) & (curves["tap"] == tap)]
            ax.set_title(f"{proto} {metric}, {tap}", fontsize=10)
            if g.empty:
                ax.text(0.5, 0.5, "no records", ha="center", va="center", color="gray", transform=ax.transAxes)
                ax.axis("off")
                continue
            floor = g[g["model"] == floor_model]
            if len(floor):
                f = floor.iloc[-1]
                ax.axhline(f["mean"], color="gray", linestyle="--", linewidth=1)
                if not math.isnan(f["std"]):
                    ax.axhspan(f["mean"] - f["std"], f["mean"] + f["std"], color="gray", alpha=0.15, linewidth=0)
            for m in models:
                c = g[g["model"] == m].sort_values("epoch")
                if c.empty:
                    continue
                ax.plot(c["epoch"], c["mean"], marker="o", markersize=3, color=colors[m], linewidth=1.2)
                band = c["std"].notna()
                if band.any():
                    ax.fill_between(c["epoch"][band], (c["mean"] - c["std"])[band], (c["mean"] + c["std"])[band],
                                    color=colors[m], alpha=0.2, linewidth=0)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("encoder training epoch", fontsize=8)
    if epochs:
        axes[0][0].set_xticks(epochs)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    handles = [Line2D([], [], color=colors[m], marker="o", markersize=3, label=names[m]) for m in models]
    if (curves["model"] == floor_model).any():
        handles.append(Line2D([], [], color="gray", linestyle="--", label=f"{names[floor_model]} (floor)"))
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
