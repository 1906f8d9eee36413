"""The feature-spectrum table beside Table X: per model and tap, how many directions its features use
(:mod:`repeval.estimators.spectrum`), so a collapsed encoder is visible for every model (pure)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
from tabulate import tabulate

from ...store.records import train_seed
from ...estimators.spectrum import COLLAPSED_PR, collapsed
from .build import EM_DASH, _order_key, at_epoch

SPECTRUM_COLUMNS = ["dataset", "model", "display", "epoch", "tap", "participation_ratio", "effective_rank",
                    "dead_fraction", "dim", "encoders", "collapsed"]


def spectrum_table(records: list[dict], dataset: str, epoch: int | None = None) -> pd.DataFrame:
    """One row per (model, tap) at each model's table epoch (:func:`at_epoch`), from the ``spectrum``
    the runner stores in every record; several trained encoders (training seeds) are averaged, and
    the row is ``collapsed`` when any of them is."""
    by: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    meta: dict[str, tuple[str, int]] = {}
    for r in at_epoch([r for r in records if r.get("dataset", dataset) == dataset and r.get("spectrum")], epoch):
        by[r["model"], r["tap"]][train_seed(r["config"])] = r["spectrum"]
        meta[r["model"]] = (r.get("display") or r["model"], r["epoch"])
    rows = []
    for (model, tap), encs in by.items():
        specs = list(encs.values())
        mean = {k: float(np.mean([s[k] for s in specs])) for k in ("participation_ratio", "effective_rank",
                                                                     "dead_fraction", "dim")}
        rows.append({"dataset": dataset, "model": model, "display": meta[model][0], "epoch": meta[model][1],
                     "tap": tap, **mean, "encoders": len(specs), "collapsed": any(collapsed(s) for s in specs)})
    df = pd.DataFrame(rows, columns=SPECTRUM_COLUMNS)
    if df.empty:
        return df
    df["_key"] = [_order_key(1, m, d) for m, d in zip(df["model"], df["display"])]
    return df.sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)


def render_spectrum(df: pd.DataFrame) -> str:
    """Markdown: a row per model, a column per tap with ``PR / effective rank / dead %``; ⚠ = collapsed."""
    taps = list(dict.fromkeys(df["tap"]))
    rows = []
    for model, g in df.groupby("model", sort=False):
        cells = {}
        for _, r in g.iterrows():
            cells[r["tap"]] = (f"{r['participation_ratio']:.1f} / {r['effective_rank']:.1f} / "
                               f"{100 * r['dead_fraction']:.0f}%" + (" ⚠" if r["collapsed"] else ""))
        rows.append([g["display"].iloc[0], int(g["epoch"].iloc[0]), *(cells.get(t, EM_DASH) for t in taps)])
    dims = ", ".join(f"{t} {int(df[df['tap'] == t]['dim'].iloc[0])}" for t in taps)
    text = ("Feature spectrum of each tap on the test split (beside Table X): participation ratio / effective "
            "rank / dead units\n\n" + tabulate(rows, headers=["Model", "Epoch", *taps], tablefmt="github"))
    notes = [f"Participation ratio (Σλ)²/Σλ² and effective rank exp H(λ/Σλ) of the covariance eigenvalues λ of "
             f"2,048 test images' features (evenly spaced through the split) (1 = one direction, up to the tap's width: {dims}); dead = "
             f"units constant over those images. ⚠ = collapsed: participation ratio below {COLLAPSED_PR:g} or "
             f"most units dead.",
             "Rows with several trained encoders show the mean over them (⚠ when any is collapsed)."]
    return text + "\n\nNotes:\n" + "\n".join(f"{i}. {n}" for i, n in enumerate(notes, 1)) + "\n"


def format_collapsed(df: pd.DataFrame) -> list[str]:
    """One line per model with a collapsed tap."""
    out = []
    for model, g in df[df["collapsed"]].groupby("model", sort=False):
        taps = ", ".join(f"{t} PR {pr:.1f}" for t, pr in zip(g["tap"], g["participation_ratio"]))
        out.append(f"{g['dataset'].iloc[0]}: {g['display'].iloc[0]} has collapsed features ({taps}; "
                   f"threshold {COLLAPSED_PR:g})")
    return out
