"""The protocol contract: a function of cached features and a frozen config -> dict of numbers.

A protocol is registered with :func:`register_protocol`. The runner calls it once per
(model, dataset, tap, seed) with a :class:`ProtocolInput` built from the feature cache, or, for a
protocol registered with ``batch``, once per (model, dataset, tap, epoch) with all the seeds it owes
(one run computes the seeds together; each seed's numbers must not depend on which other seeds
share the call, so an interrupted run resumes to the same records). Images are included only for
protocols that declare ``needs_images`` (reconstruction, MINE).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from ..estimators import ProtocolFailure  # noqa: F401  (raised by protocols and estimator cores)
from ..estimators.zscore import zscore, zscore_stats  # noqa: F401  (shared by the protocols)
from ..registry import DEFAULT_ORDER, PROTOCOLS


@dataclass(frozen=True)
class Split:
    features: torch.Tensor            # (N, D) float32, flattened tap, on CPU
    labels: torch.Tensor              # (N,) int64
    images: torch.Tensor | None = None  # (N, C, H, W) float in [-1, 1], when needs_images


@dataclass(frozen=True)
class ProtocolInput:
    tap: str
    train: Split
    test: Split
    n_classes: int
    artifact_stem: Path | None = None  # e.g. results/<dataset>/recon/<model>: where figures may go


REPORT_TABLES = ("1", "4", "X")   # the paper's Tables 1 and 4, and the extra-protocols table


@dataclass(frozen=True)
class ReportColumn:
    """One table column a protocol fills: the mean over seeds of ``metric`` on ``tap``.

    ``table``: "1" or "4" (the paper's Tables 1 and 4, compared with its numbers) or "X" (the extra
    protocols, no paper counterpart). ``tap`` None: whichever tap the protocol's records carry (code
    protocols). ``paper`` / ``paper_std``: the field of ``repeval/report/paper/table<table>.csv`` holding the
    paper's mean / std for this column (None: the paper has no counterpart). ``delta`` False: the
    paper's number is shown and ranked against ours but never subtracted (another scale).
    """

    table: str
    key: str            # column id in the CSV (unique within its table)
    label: str          # header text
    metric: str
    tap: str | None = None
    fmt: str = ".2f"
    paper: str | None = None
    paper_std: str | None = None
    protocol: str = ""  # filled in by register_protocol
    delta: bool = True  # False: the paper's number is on another scale; shown, ranked, never subtracted


@dataclass(frozen=True)
class Reporting:
    """How a protocol is reported: its table columns, the phrase it adds to its table's title, the
    text it adds to the table's "Cells:" footnote, and its headline metric(s), drawn against the
    encoder's training epoch in the learning curves when ``curve`` (the number format is per column)."""

    columns: tuple[ReportColumn, ...] = ()
    title: str = ""
    footnote: str = ""
    headline: tuple[str, ...] = ()
    curve: bool = False

    @property
    def metrics(self) -> tuple[str, ...]:
        """The headline metrics, else the metrics of the columns (in column order)."""
        return self.headline or tuple(dict.fromkeys(c.metric for c in self.columns))


@dataclass(frozen=True)
class ProtocolSpec:
    """``taps``: "all" (one record per tap, e.g. probes) or "code" (the representation tap y only).

    ``seeds`` is the default number of seeds (Table 4's SVM uses five). ``version`` is bumped
    whenever the protocol's code changes what it computes: it is part of every record's identity.
    ``every_epoch``: run at every evaluation epoch of a learning curve (cheap probes), not only at
    the last one. ``report`` says where and how its numbers appear in ``repeval table`` (no report:
    only in the timing table). ``batch``: computes several seeds in one call (see the module
    docstring); ``fn`` stays the one-seed entry point.
    """

    name: str
    fn: Callable[..., dict]
    config_cls: type
    taps: str = "all"
    seeds: int = 1
    needs_images: bool = False
    display: str = ""
    version: int = 1
    every_epoch: bool = False
    report: Reporting = Reporting()
    batch: Callable[..., list[dict]] | None = None   # fn(inp, cfg, *, seeds, device) -> one dict per seed


def register_protocol(name: str, config_cls: type, *, taps: str = "all", seeds: int = 1,
                      needs_images: bool = False, display: str = "", version: int = 1,
                      every_epoch: bool = False, report: Reporting | None = None, order: float = DEFAULT_ORDER,
                      batch: Callable[..., list[dict]] | None = None):
    """Decorator: ``@register_protocol("svm", SVMConfig, seeds=5)`` on ``fn(inp, cfg, *, seed, device)``;
    ``order``: its position among the protocols (table columns, default --protocols; built-ins 10-70);
    ``batch``: ``batch(inp, cfg, *, seeds, device)`` returning one dict per seed, which the runner
    calls instead of ``fn`` once per (tap, epoch)."""
    if taps not in ("all", "code"):
        raise ValueError(f"taps must be 'all' or 'code', got {taps!r}")

    rep = report or Reporting()
    rep = replace(rep, columns=tuple(replace(c, protocol=name) for c in rep.columns))
    keys = [(c.table, c.key) for c in rep.columns]
    if len(set(keys)) != len(keys) or any(c.table not in REPORT_TABLES for c in rep.columns):
        raise ValueError(f"protocol {name!r}: report columns need unique keys and a table in {REPORT_TABLES}, "
                         f"got {keys}")

    def deco(fn):
        PROTOCOLS.register(name, ProtocolSpec(name, fn, config_cls, taps, seeds, needs_images, display or name,
                                              version, every_epoch, rep, batch), order=order)
        return fn
    return deco


def code_tap(taps: list[str]) -> str:
    """The representation tap for code-level protocols: ``y`` when present, else the last tap."""
    return "y" if "y" in taps else taps[-1]
