"""The tables printed at the end of ``repeval run``: Tables 1, 4 and X for the models just run, built
from the stored records by :mod:`repeval.tables` (footnotes and files come from ``repeval table``).
What each protocol reports (its columns and headline metrics) is declared at its registration
(:class:`repeval.protocol.Reporting`)."""
from __future__ import annotations

from pathlib import Path


def print_summary(results: Path, dataset: str, models: list[str] | None = None) -> None:
    from .tables import print_tables
    print_tables(results, dataset, models)
