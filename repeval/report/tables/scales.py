"""Which of our numbers is read against the paper's, column by column: the paper's scales (pure).

The protocols declare their table columns (:class:`repeval.plugin.protocol.Reporting`); a few of those
columns hold a number on another scale than the paper's column it is set beside. This module maps
them onto the paper's scales before a table is built (:func:`on_paper_scale`, applied by
:attr:`repeval.report.tables.build.TableSpec.columns`), and says why in the table's footnote
(:func:`scale_notes`):

- **SSIM** (Table 4 "MS-SSIM", Hjelm et al. 2019, Sec. 4): the paper's column is the released code's
  single-scale SSIM with its window bug; the ``recon`` protocol records that variant as
  ``ssim_released``. The paper and Δ sit beside ``ssim_released``; our standard SSIM (``ssim``,
  Wang et al. 2004) and MS-SSIM follow, labelled, without a paper number.
- **NDM** (Sec. 4.1): the paper ran its critic on sigmoid(y) as it is; ``ndm_raw`` is that scale,
  compared with the paper (Δ). The z-scored ``ndm`` (every dimension at unit scale, so that a code of
  small scale is not read as independent) is shown beside it, without a paper number.
- **MINE**: the paper's values (e.g. 93.02 for its VAE) are on a scale it never states; ours is a
  held-out Donsker-Varadhan bound in nats. The paper's number is shown, no Δ: only the ranking is
  compared (rank agreement).

When a protocol comes to declare these columns itself, its entry here is dropped.
"""
from __future__ import annotations

from dataclasses import replace

from ...plugin.protocol import ReportColumn


def _ssim(c: ReportColumn) -> tuple[ReportColumn, ...]:
    return (replace(c, key="ssim_released", label="SSIM (released code)", metric="ssim_released"),
            replace(c, label="SSIM (standard)", paper=None, paper_std=None))


def _ndm(c: ReportColumn) -> tuple[ReportColumn, ...]:
    return (replace(c, key="ndm_raw", label="NDM (raw codes)", metric="ndm_raw"),
            replace(c, label="NDM (z-scored)", paper=None, paper_std=None))


def _mine(c: ReportColumn) -> tuple[ReportColumn, ...]:
    return (replace(c, label="MINE (nats)", delta=False),)


# (protocol, column key as declared, paper field) -> the columns shown instead
PAPER_SCALE = {("recon", "ssim", "msssim"): _ssim, ("ndm", "ndm", "ndm"): _ndm, ("mine", "mine", "mine"): _mine}

# footnotes replacing the protocol's "Cells" text where the columns above replace its own
CELL_NOTES = {
    "recon": "SSIM (released code) = protocol `recon`, metric `ssim_released`: the released DIM code's "
             "single-scale SSIM (11x11 window, sigma 11), which the paper's column \"MS-SSIM\" reports (Hjelm et "
             "al. 2019, Sec. 4), so Δ is read on it; SSIM (standard) = metric `ssim` (Wang et al. 2004, sigma 1.5) "
             "and MS-SSIM = metric `ms_ssim` (3 scales), no paper counterpart",
    "ndm": "NDM (raw codes) = protocol `ndm`, metric `ndm_raw` (nats): the critic on sigmoid(y) as it is, the "
           "paper's scale (Sec. 4.1), so Δ is read on it; NDM (z-scored) = metric `ndm`, every dimension "
           "standardised first (a code of small scale is not read as independent), no paper counterpart",
    "mine": "MINE (nats) = protocol `mine`, metric `mi`: a held-out Donsker-Varadhan bound on I(X; y) in nats",
}

# units of a column's metric, for axis labels: (protocol, metric) first, then metric name prefixes
UNITS = {("mine", "mi"): "nats", ("ndm", "ndm"): "nats", ("ndm", "ndm_raw"): "nats"}


def on_paper_scale(col: ReportColumn) -> tuple[ReportColumn, ...]:
    """The column(s) shown for one declared column (itself when no scale change applies)."""
    fn = PAPER_SCALE.get((col.protocol, col.key, col.paper))
    return fn(col) if fn else (col,)


def cell_note(protocol: str, declared: str) -> str:
    return CELL_NOTES.get(protocol, declared) if any(k[0] == protocol for k in PAPER_SCALE) else declared


def unit(protocol: str, metric: str) -> str:
    """'%' for accuracies, 'nats' for the MI and dependency bounds, '' for SSIM-like scores."""
    if (protocol, metric) in UNITS:
        return UNITS[protocol, metric]
    return "%" if metric.startswith("accuracy") else ""


def no_delta_note(df) -> str | None:
    """The footnote of a table holding a column compared by rank only (MINE): why there is no Δ, with
    the range of our values and of the paper's, read from the table."""
    rows = df[(df["_delta"] == False) & df["paper"].notna()]   # noqa: E712 (a boolean column)
    if rows.empty:
        return None
    parts = []
    for key, g in rows.groupby("column", sort=False):
        ours = df[(df["column"] == key) & df["mean"].notna()]["mean"]
        label = g["column_label"].iloc[0]
        fmt = g["_fmt"].iloc[0]
        span = f"ours {ours.min():{fmt}}–{ours.max():{fmt}}" if len(ours) else "ours: no value"
        parts.append(f"{label}: no Δ. The paper's values ({g['paper'].min():.2f}–{g['paper'].max():.2f}) are on a "
                     f"scale it does not state ({span} nats, a held-out bound); only the ranking is compared "
                     "(rank agreement)")
    return "; ".join(parts) + "."


# protocol settings that do nothing under another setting: (protocol, setting, value) -> inert keys
INERT = {("mlp", "schedule", "cosine"): ("milestones", "gamma")}


def inert_settings(protocol: str, cfg: dict | None) -> set[str]:
    """The keys of a protocol config that have no effect given its other values (left out of notes)."""
    out: set[str] = set()
    for (p, key, value), keys in INERT.items():
        if p == protocol and (cfg or {}).get(key) == value:
            out |= set(keys)
    return out
