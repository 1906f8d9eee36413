"""The paper's published numbers (Hjelm et al., ICLR 2019, camera-ready Tables 1 and 4) and how our
models map onto its rows.

The numbers ship with the package (``repeval/paper/table1.csv``, ``table4.csv``; copies of
DIM_SPEC.md's reference tables) and are read with :mod:`importlib.resources`, so ``repeval table``
works from an installed wheel. The camera-ready tables differ from the review version; these are the
camera-ready ones.

Rows are matched by *display name* (``record["display"]``), compared after :func:`canon`
(case, spaces and ``β``/``beta`` spelling ignored), so ``β-VAE`` (ours) meets ``beta-VAE`` (the CSV).
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from importlib import resources

import pandas as pd

# Table 1 rows in the paper's order, then our rows the paper does not have.
TABLE1_ORDER = ("Fully supervised", "VAE", "AE", "β-VAE", "AAE", "BiGAN", "NAT", "DIM(G)",
                "DIM(L) (DV)", "DIM(L) (JSD)", "DIM(L) (infoNCE)")
TABLE1_EXTRA = ("DIM(L+G)", "Random init")
# Table 4 rows in the paper's order. The paper's row "DIM(L)" does not name its estimator; we compare
# it with our DIM(L) (infoNCE), the paper's default estimator (a choice, stated in every footnote).
TABLE4_ORDER = ("VAE", "AAE", "BiGAN", "NAT", "DIM(G)", "DIM(L+G)", "DIM(L) (infoNCE)")
TABLE4_ALIASES = {"DIM(L)": "DIM(L) (infoNCE)"}   # paper row name -> our display name
# Rows the paper lacks, in this order before any other (user) model, alphabetical after.
KNOWN_EXTRA = ("AE", "β-VAE", "Fully supervised", "DIM(L) (DV)", "DIM(L) (JSD)", "DIM(L+G)", "Random init")

# our dataset label -> the paper's dataset column
PAPER_DATASET = {"cifar10": "cifar10", "cifar10-jpeg": "cifar10", "cifar100": "cifar100"}
DATASET_TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}

# Table 4 CSV fields -> our column keys
TABLE4_FIELDS = {"svm_conv": ("svm_conv_mean", "svm_conv_std"), "svm_fc": ("svm_fc_mean", "svm_fc_std"),
                 "svm_y": ("svm_y_mean", "svm_y_std"), "ssim": ("msssim", None), "mine": ("mine", None),
                 "ndm": ("ndm", None)}


@dataclass(frozen=True)
class PaperValue:
    mean: float
    std: float | None = None


def canon(name: str) -> str:
    """Comparison key for display names: 'β-VAE' == 'beta-VAE' == 'Beta-VAE', spaces ignored."""
    return "".join(name.replace("β", "beta").casefold().split())


def paper_dataset(label: str) -> str | None:
    """The paper's dataset for our dataset label (``cifar10-jpeg`` -> ``cifar10``), else None."""
    return PAPER_DATASET.get(label)


def dataset_title(label: str) -> str:
    return DATASET_TITLE.get(label, label)


@functools.lru_cache(maxsize=None)
def load_table(n: int) -> pd.DataFrame:
    """The shipped CSV of the paper's Table ``n`` (1 or 4), comment lines dropped."""
    text = resources.files("repeval").joinpath("paper", f"table{n}.csv").read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text), comment="#", skipinitialspace=True)


@functools.lru_cache(maxsize=None)
def header(n: int) -> tuple[str, ...]:
    """The comment lines at the top of the shipped CSV (the table's caption, as transcribed)."""
    text = resources.files("repeval").joinpath("paper", f"table{n}.csv").read_text(encoding="utf-8")
    return tuple(line.lstrip("# ").rstrip() for line in text.splitlines() if line.startswith("#"))


def _num(v) -> float | None:
    return None if pd.isna(v) else float(v)


@functools.lru_cache(maxsize=None)
def paper_values(table: int, dataset: str) -> dict[tuple[str, str], PaperValue]:
    """``{(canon(display), column_key): PaperValue}`` for our dataset label; empty when the paper
    has no numbers for it. Table 1 columns: conv, fc, y; Table 4: svm_conv, svm_fc, svm_y, ssim
    (the paper's "MS-SSIM", single-scale SSIM in the released code), mine, ndm."""
    pds = paper_dataset(dataset)
    if pds is None:
        return {}
    df = load_table(table)
    df = df[df["dataset"] == pds]
    out: dict[tuple[str, str], PaperValue] = {}
    for _, row in df.iterrows():
        name = row["model"].strip()
        if table == 4:
            name = TABLE4_ALIASES.get(name, name)
            fields = TABLE4_FIELDS
        else:
            fields = {c: (c, None) for c in ("conv", "fc", "y")}
        for col, (mean_f, std_f) in fields.items():
            m = _num(row[mean_f])
            if m is not None:
                out[(canon(name), col)] = PaperValue(m, _num(row[std_f]) if std_f else None)
    return out


def row_order(table: int) -> tuple[str, ...]:
    """Display names in the order rows are shown: the paper's rows, then known extras."""
    base = TABLE1_ORDER + TABLE1_EXTRA if table == 1 else TABLE4_ORDER
    return base + tuple(x for x in KNOWN_EXTRA if x not in base)


def paper_rows(table: int, dataset: str) -> tuple[str, ...]:
    """The paper's rows for our dataset label, in its order, spelled as our display names
    (``beta-VAE`` -> ``β-VAE``; Table 4's ``DIM(L)`` -> ``DIM(L) (infoNCE)``)."""
    pds = paper_dataset(dataset)
    if pds is None:
        return ()
    ours = {canon(n): n for n in row_order(table)}
    names = load_table(table).loc[lambda d: d["dataset"] == pds, "model"].str.strip()
    if table == 4:
        names = names.map(lambda n: TABLE4_ALIASES.get(n, n))
    return tuple(ours.get(canon(n), n) for n in names)
