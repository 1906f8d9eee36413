"""The paper's published numbers (Hjelm et al., ICLR 2019, camera-ready Tables 1 and 4) and how our
models map onto its rows.

The numbers ship with the package (``repeval/report/paper/table1.csv``, ``table4.csv``; copies of
the paper's camera-ready tables) and are read with :mod:`importlib.resources`, so ``repeval table``
works from an installed wheel. The camera-ready tables differ from the review version; these are the
camera-ready ones.

Rows are matched by *model name*: each CSV row names the repeval model it is compared with (column
``name``, e.g. ``dim-l-infonce`` for the paper's Table 4 row "DIM(L)"); the paper's own label is kept
in column ``model``. Which CSV field a table column reads is declared by the protocol that fills the
column (:class:`repeval.plugin.protocol.ReportColumn` ``paper`` / ``paper_std``).
"""
from __future__ import annotations

import functools
import io
from importlib import resources

import pandas as pd

# Rows the paper lacks, by model name: these first (in this order), any other model after them.
KNOWN_EXTRA = {1: ("dim-lg", "random", "ae", "beta-vae", "supervised", "dim-l-dv", "dim-l-jsd"),
               4: ("ae", "beta-vae", "supervised", "dim-l-dv", "dim-l-jsd", "dim-lg", "random")}

# our dataset label -> the paper's dataset column
PAPER_DATASET = {"cifar10": "cifar10", "cifar10-jpeg": "cifar10", "cifar100": "cifar100"}
DATASET_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}


def paper_dataset(label: str) -> str | None:
    """The paper's dataset for our dataset label (``cifar10-jpeg`` -> ``cifar10``), else None."""
    return PAPER_DATASET.get(label)


def dataset_title(label: str) -> str:
    return DATASET_TITLE.get(label, label)


@functools.lru_cache(maxsize=None)
def load_table(n: int) -> pd.DataFrame:
    """The shipped CSV of the paper's Table ``n`` (1 or 4), comment lines dropped."""
    text = resources.files("repeval.report").joinpath("paper", f"table{n}.csv").read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), comment="#", skipinitialspace=True)


@functools.lru_cache(maxsize=None)
def header(n: int) -> tuple[str, ...]:
    """The comment lines at the top of the shipped CSV (the table's caption, as transcribed)."""
    text = resources.files("repeval.report").joinpath("paper", f"table{n}.csv").read_text(encoding="utf-8")
    return tuple(line.lstrip("# ").rstrip() for line in text.splitlines() if line.startswith("#"))


def _num(v) -> float | None:
    return None if pd.isna(v) else float(v)


def _rows(table: int, dataset: str) -> pd.DataFrame:
    pds = paper_dataset(dataset)
    df = load_table(table)
    return df[df["dataset"] == pds] if pds is not None else df.iloc[0:0]


@functools.lru_cache(maxsize=None)
def paper_values(table: int, dataset: str) -> dict[tuple[str, str], float]:
    """``{(model name, CSV field): number}`` for our dataset label (blank fields left out); empty
    when the paper has no numbers for it. Fields: Table 1 ``conv``, ``fc``, ``y``; Table 4
    ``svm_<tap>_mean`` / ``svm_<tap>_std``, ``msssim`` (single-scale SSIM in the released code),
    ``mine``, ``ndm``."""
    out: dict[tuple[str, str], float] = {}
    for _, row in _rows(table, dataset).iterrows():
        for field in row.index.drop(["name", "model", "dataset"]):
            v = _num(row[field])
            if v is not None:
                out[(row["name"].strip(), field)] = v
    return out


def row_order(table: int) -> tuple[str, ...]:
    """Model names in the order rows are shown: the paper's rows, then the known extras."""
    names = tuple(dict.fromkeys(load_table(table)["name"].str.strip()))
    return names + tuple(x for x in KNOWN_EXTRA.get(table, ()) if x not in names)


def paper_rows(table: int, dataset: str) -> tuple[tuple[str, str], ...]:
    """The paper's rows for our dataset label, in its order: ``(model name, the paper's label)``."""
    rows = _rows(table, dataset)
    return tuple(zip(rows["name"].str.strip(), rows["model"].str.strip()))
