"""The tables printed at the end of ``repeval run``: Tables 1 and 4 for the models just run, built
from the stored records by :mod:`repeval.tables` (footnotes and files come from ``repeval table``)."""
from __future__ import annotations

from pathlib import Path

# the headline metric of each protocol
HEADLINE = {"mlp": "accuracy", "svm": "accuracy", "recon": "ssim", "mine": "mi", "ndm": "ndm"}


def load_records(results: Path, dataset: str) -> list[dict]:
    from .tables import load_records as _load
    return _load(results, dataset)[0]


def print_summary(results: Path, dataset: str, models: list[str] | None = None) -> None:
    from .tables import print_tables
    print_tables(results, dataset, models)
