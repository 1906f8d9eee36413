"""A compact console table of stored records (model x protocol/tap), printed after a run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .storage import read_json

# the headline metric of each protocol
HEADLINE = {"mlp": "accuracy", "svm": "accuracy", "recon": "ssim", "mine": "mi", "ndm": "ndm"}


def load_records(results: Path, dataset: str) -> list[dict]:
    root = Path(results) / dataset / "records"
    return [read_json(p) for p in sorted(root.glob("*/*/*.json"))] if root.is_dir() else []


def print_summary(results: Path, dataset: str, models: list[str] | None = None) -> None:
    rows = []
    for r in load_records(results, dataset):
        if models and r["model"] not in models:
            continue
        key = HEADLINE.get(r["protocol"])
        val = r["metrics"].get(key) if r["success"] and key else None
        rows.append({"model": r["display"], "column": f"{r['protocol']}:{r['tap']}", "value": val})
    if not rows:
        print(f"(no records for {dataset})")
        return
    df = pd.DataFrame(rows).groupby(["model", "column"], sort=False)["value"].agg(["mean", "std", "count"])
    cell = df.apply(lambda s: "—" if pd.isna(s["mean"]) else (f"{s['mean']:.2f}" + (
        f" ± {s['std']:.2f}" if s["count"] > 1 else "")), axis=1).unstack("column")
    print(f"\n{dataset}: headline metric per protocol:tap (mlp/svm accuracy %, recon SSIM, mine/ndm nats)")
    print(tabulate(cell.fillna("—"), headers="keys", tablefmt="github"))
