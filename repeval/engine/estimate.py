"""How long a run will take: per-record, training and extraction seconds estimated from the timings
kept in the results folder (every record stores ``timing_s``), else from a stated cost model; and the
one overall progress line of a run (records done / to do, elapsed, ETA) built on those estimates.

Everything here is a pure function of what a run owes (:class:`Work`) and past timings
(:class:`Timings`), except :class:`Overall`, which only displays and logs.

Where a figure comes from, most trusted first:

* a protocol record: the median ``timing_s.protocol`` of the folder's records of the same protocol,
  tap, protocol version and settings (over models); else of the same protocol and tap with other
  settings, scaled by the ratio of their budgets (``epochs``, ``steps``); else the cost model;
* training: the model's own records (the largest ``timing_s.train`` per epoch: a record written after
  a resume or a kept snapshot carries less), else the median over the folder's other trained models
  per image and epoch, else the cost model;
* extraction: the model's own records (features not from the cache), else the median over models,
  else the cost model.

The cost model holds seconds per record per 1,000 training images at the ``quick`` preset's budgets,
measured on 2 CPU cores on the embedded digits data (:data:`COST_PER_1K`, regenerated with
:func:`cost_table`), scaled by the number of training images and by the budget ratio.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from ..config import config_hash
from ..store.progress import Progress, log
from .presets import PRESETS

# Seconds per record per 1,000 training images at the quick preset's budgets on digits: the medians
# over models of the committed results/digits records (the default run: worker processes of one torch
# thread on 2 AMD EPYC Zen 5 cores, 2026-12-05), divided by 1.437 (digits' 1,437 training images);
# cost_table() regenerates them. Seconds of one record where one call computes several seeds (mlp,
# svm) are the call's share.
COST_PER_1K = {
    ("knn", "conv"): 0.03, ("knn", "fc"): 0.01, ("knn", "y"): 0.01,
    ("linear", "conv"): 0.41, ("linear", "fc"): 0.08, ("linear", "y"): 0.03,
    ("mlp", "conv"): 0.71, ("mlp", "fc"): 0.21, ("mlp", "y"): 0.05,
    ("svm", "conv"): 0.41, ("svm", "fc"): 0.1, ("svm", "y"): 0.02,
    ("mine", "y"): 1.34, ("ndm", "y"): 0.89, ("recon", "y"): 0.61,
}
COST_DEFAULT_1K = 1.0            # a protocol or tap the table does not know, per record per 1,000 images
TRAIN_PER_1K_EPOCH = 2.0         # seconds per training epoch per 1,000 images (digits median, ibid.)
TRAIN_PER_1K_EPOCH_MODEL = {"bigan": 6.6, "aae": 4.2}   # the slow ones, ibid.
EXTRACT_PER_1K = 0.44            # seconds to extract every tap of 1,000 images (train + test), ibid.
BUDGET_KEYS = ("epochs", "steps")
COST_MODEL = "cost model"
# The budgets COST_PER_1K was measured at: the quick preset's epochs and steps.
QUICK_BUDGETS = {p: {k: v for k, v in sec.items() if k in BUDGET_KEYS} for p, sec in PRESETS.get("quick").sections.items()}


@dataclass(frozen=True)
class Owed:
    """One record to compute, in the estimator's terms."""

    protocol: str
    tap: str
    version: int = 1
    config: dict = field(default_factory=dict)   # the protocol's resolved config (as in a record)

    @property
    def key(self) -> tuple:
        return (self.protocol, self.tap, self.version, config_hash(self.config))


@dataclass(frozen=True)
class Work:
    """What one model owes: its records, the training epochs to run and the extractions to do."""

    model: str
    tasks: tuple[Owed, ...] = ()
    train_epochs: int = 0       # epochs still to train
    train_images: int = 0       # images per training epoch
    extracts: int = 0           # extractions of every tap (one per evaluation epoch that owes records)
    images: int = 0             # images per extraction (train + test split)
    n_train: int = 0            # training images the protocols see (scales the cost model)


@dataclass
class Timings:
    """Past timings of one results folder (one dataset), from its records."""

    where: str = ""
    n_records: int = 0
    protocol: dict = field(default_factory=dict)         # Owed.key -> [seconds]
    protocol_any: dict = field(default_factory=dict)     # (protocol, tap) -> [(seconds, config)]
    train_per_epoch: dict = field(default_factory=dict)  # model -> seconds per epoch
    train_per_image_epoch: list = field(default_factory=list)
    extract: dict = field(default_factory=dict)          # model -> seconds per extraction

    @classmethod
    def from_records(cls, records: Iterable, where: str = "", device: str = "cpu",
                     n_train: int = 0) -> "Timings":
        """``records``: :class:`repeval.store.records.Record` objects (or dicts with the same fields) of one
        dataset; those computed on another kind of device (cpu, cuda) are left out, as are failures.
        ``n_train``: the dataset's training images (per-image training figures of another model)."""
        t = cls(where=where)
        per_epoch: dict[str, list[float]] = defaultdict(list)
        images: dict[str, int] = {}
        extract: dict[str, list[float]] = defaultdict(list)
        kind = device.split(":")[0]
        for r in records:
            get = r.get if isinstance(r, dict) else lambda k, r=r: getattr(r, k, None)
            timing, config = get("timing_s") or {}, get("config") or {}
            rdev = str(((get("provenance") or {}).get("machine") or {}).get("device") or "cpu").split(":")[0]
            if not get("success") or rdev != kind or not isinstance(timing.get("protocol"), (int, float)):
                continue
            t.n_records += 1
            owed = Owed(get("protocol"), get("tap"), config.get("protocol_version", 1), config.get("protocol_config") or {})
            t.protocol.setdefault(owed.key, []).append(float(timing["protocol"]))
            t.protocol_any.setdefault((owed.protocol, owed.tap), []).append((float(timing["protocol"]), owed.config))
            model, epoch = get("model"), get("epoch") or 0
            train_s = timing.get("train")
            if epoch > 0 and isinstance(train_s, (int, float)) and train_s > 0:
                per_epoch[model].append(float(train_s) / epoch)
                enc_train = ((config.get("encoder") or {}).get("train") or {})
                images[model] = int(enc_train.get("max_train") or 0)
            if not timing.get("features_cached") and isinstance(timing.get("extract"), (int, float)):
                extract[model].append(float(timing["extract"]))
        t.train_per_epoch = {m: max(v) for m, v in per_epoch.items()}
        t.train_per_image_epoch = [s / (images[m] or n_train or 1) for m, s in t.train_per_epoch.items()]
        t.extract = {m: max(v) for m, v in extract.items() if max(v) > 0}
        return t


def budget_ratio(want: dict, have: dict) -> float:
    """How much more work ``want``'s budget is than ``have``'s: the product of the ratios of their
    ``epochs`` and ``steps`` (1 for a key either lacks)."""
    ratio = 1.0
    for k in BUDGET_KEYS:
        a, b = want.get(k), have.get(k)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
            ratio *= a / b
    return ratio


def cost_model(task: Owed, n_train: int) -> float:
    """The stated cost model: seconds of one record on ``n_train`` training images."""
    per_1k = COST_PER_1K.get((task.protocol, task.tap))
    if per_1k is None:
        same = [v for (p, _), v in COST_PER_1K.items() if p == task.protocol]
        per_1k = statistics.median(same) if same else COST_DEFAULT_1K
    images = n_train
    cap = task.config.get("max_train")
    if isinstance(cap, int) and cap > 0:
        images = min(images, cap)
    return per_1k * images / 1000 * budget_ratio(task.config, QUICK_BUDGETS.get(task.protocol, {}))


def record_seconds(task: Owed, timings: Timings, n_train: int) -> tuple[float, str]:
    """(seconds, source) of one owed record; source is ``"records"`` or :data:`COST_MODEL`."""
    same = timings.protocol.get(task.key)
    if same:
        return statistics.median(same), "records"
    other = timings.protocol_any.get((task.protocol, task.tap))
    if other:
        return statistics.median(s * budget_ratio(task.config, cfg) for s, cfg in other), "records"
    return cost_model(task, n_train), COST_MODEL


@dataclass
class Estimate:
    """Seconds one model's work will take, and where each figure came from."""

    model: str
    train: float = 0.0
    extract: float = 0.0
    records: list = field(default_factory=list)        # seconds per owed record, in task order
    sources: dict = field(default_factory=dict)        # part -> source ("records", "cost model", ...)
    from_records: int = 0                              # owed records estimated from the folder's timings

    @property
    def protocols(self) -> float:
        return sum(self.records)

    @property
    def total(self) -> float:
        return self.train + self.extract + self.protocols


def estimate(work: Work, timings: Timings) -> Estimate:
    """The estimated seconds of ``work`` (pure: plan + past timings -> seconds)."""
    est = Estimate(work.model)
    for task in work.tasks:
        s, src = record_seconds(task, timings, work.n_train)
        est.records.append(s)
        est.from_records += src == "records"
    if work.tasks:
        est.sources["protocols"] = ("records" if est.from_records == len(work.tasks) else
                                    COST_MODEL if not est.from_records else "records + cost model")
    if work.train_epochs > 0:
        own = timings.train_per_epoch.get(work.model)
        if own is not None:
            est.train, est.sources["train"] = own * work.train_epochs, "records"
        elif timings.train_per_image_epoch:
            per = statistics.median(timings.train_per_image_epoch)
            est.train, est.sources["train"] = per * work.train_images * work.train_epochs, "other models' records"
        else:
            per_1k = TRAIN_PER_1K_EPOCH_MODEL.get(work.model, TRAIN_PER_1K_EPOCH)
            est.train, est.sources["train"] = per_1k * work.train_images / 1000 * work.train_epochs, COST_MODEL
    if work.extracts > 0:
        own = timings.extract.get(work.model)
        if own is not None:
            est.extract, est.sources["extract"] = own * work.extracts, "records"
        elif timings.extract:
            est.extract = statistics.median(timings.extract.values()) * work.extracts
            est.sources["extract"] = "other models' records"
        else:
            est.extract, est.sources["extract"] = EXTRACT_PER_1K * work.images / 1000 * work.extracts, COST_MODEL
    return est


def fmt_seconds(s: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(est: Estimate, timings: Timings) -> str:
    """One line for ``--dry-run``: the model's estimate, its parts, and where they came from."""
    parts = [(k, v, est.sources[k]) for k, v in (("train", est.train), ("extract", est.extract),
                                                ("protocols", est.protocols)) if k in est.sources]
    if not parts:
        return "  estimated 0s (nothing to do)"
    if len({src for _, _, src in parts}) == 1:
        text = ", ".join(f"{k} {fmt_seconds(v)}" for k, v, _ in parts) + f"; {_words(parts[0][2], timings)}"
    else:
        text = ", ".join(f"{k} {fmt_seconds(v)} [{_words(src, timings)}]" for k, v, src in parts)
    return f"  estimated {fmt_seconds(est.total)} ({text})"


def _words(source: str, timings: Timings) -> str:
    return {"records": f"from {timings.n_records} records in {timings.where}",
            "other models' records": f"from other models' records in {timings.where}",
            "records + cost model": f"from {timings.n_records} records in {timings.where}, partly cost model",
            }.get(source, source)


def source_of(estimates: list[Estimate], timings: Timings) -> str:
    """Where a set of estimates came from, in words."""
    used = {v for e in estimates for v in e.sources.values()}
    if used <= {COST_MODEL}:
        return "cost model" + ("" if timings.n_records else " (no timings in the results folder)")
    return (f"from {timings.n_records} records in {timings.where}"
            + (" and the cost model" if any("cost" in v for v in used) else ""))


def describe_total(estimates: list[Estimate], timings: Timings, jobs: int = 1) -> str:
    """The dry run's last line: the whole run's estimate and its source (with ``jobs`` worker
    processes, also the work shared among them)."""
    total = sum(e.total for e in estimates)
    n = sum(len(e.records) for e in estimates)
    if not n:
        return "estimated total: 0s (nothing to compute)"
    models = sum(1 for e in estimates if e.records)
    return (f"estimated total: {fmt_seconds(total)} for {n} records over {models} model(s)"
            + in_workers(total, jobs, models) + f" ({source_of(estimates, timings)})")


def in_workers(total: float, jobs: int, models: int) -> str:
    """``", about 1m05s in 2 worker processes"`` when the work is shared, else ``""``."""
    share = min(jobs, models)
    return f", about {fmt_seconds(total / share)} in {share} worker processes" if share > 1 else ""


class Overall:
    """The run's one overall progress line: a tqdm bar of records done / to do with elapsed time and a
    seconds-weighted ETA (on a terminal), and an info line after each model (``[overall] 66/429
    records, 3m12s elapsed, ETA 14m``; a debug line with ``quiet``).

    The ETA is the estimated seconds of the work left, scaled by how the run has kept to the estimate
    so far (elapsed / estimated seconds of the work done), so a slower machine corrects it."""

    def __init__(self, estimates: dict, prog: Progress, quiet: bool = False, clock=time.monotonic):
        self.est = dict(estimates)          # key -> Estimate (remaining work of each model)
        self.worked = {k for k, e in self.est.items() if e.records}
        self.done_records = 0
        self.done_est = 0.0                 # estimated seconds of the work done
        self.clock, self.quiet = clock, quiet
        self.t0 = clock()
        self.bar = prog.bar(total=self.total_records, desc="overall", unit="record",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} records "
                                       "[{elapsed}{postfix}]")

    @property
    def total_records(self) -> int:
        return self.done_records + sum(len(e.records) for e in self.est.values())

    def remaining_seconds(self) -> float:
        left = sum(e.total for e in self.est.values())
        elapsed = self.clock() - self.t0
        pace = elapsed / self.done_est if self.done_est > 1.0 and elapsed > 1.0 else 1.0
        return left * min(max(pace, 0.1), 10.0)

    def replan(self, key, est: Estimate) -> None:
        """The model's work as found under its lock (another process may have done some)."""
        self.est[key] = est
        if est.records:
            self.worked.add(key)
        self.bar.total = self.total_records
        self._refresh()

    def advance(self, key, part: str, share: float = 1.0) -> None:
        """Part of a model's work is done: ``"record"`` (one record written or failed), or ``share`` of
        its remaining ``"train"`` or ``"extract"`` estimate."""
        e = self.est.get(key)
        if part == "record":
            if e is not None and e.records:
                self.done_est += e.records.pop(0)
            self.done_records += 1
            self.bar.update(1)
        elif e is not None:
            used = getattr(e, part) * min(max(share, 0.0), 1.0)
            self.done_est += used
            setattr(e, part, getattr(e, part) - used)
        self._refresh()

    def model_done(self, key) -> None:
        """The model is finished (or given up: its remaining work leaves the totals); logs the line
        when the model had records to compute."""
        e = self.est.pop(key, None)
        if e is None:
            return
        self.bar.total = self.total_records
        self._refresh()
        if key in self.worked:
            log(self.line(), self.quiet)

    def line(self) -> str:
        return (f"[overall] {self.done_records}/{self.total_records} records, "
                f"{fmt_seconds(self.clock() - self.t0)} elapsed, ETA {fmt_seconds(self.remaining_seconds())}")

    def _refresh(self) -> None:
        self.bar.set_postfix_str(f"ETA {fmt_seconds(self.remaining_seconds())}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def cost_table(records: Iterable, n_train: int) -> dict:
    """:data:`COST_PER_1K` from a results folder's records (run on the embedded data at the quick
    preset): the median seconds per record of each (protocol, tap) per 1,000 training images."""
    by: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        get = r.get if isinstance(r, dict) else lambda k, r=r: getattr(r, k, None)
        if get("success"):
            by[(get("protocol"), get("tap"))].append(float((get("timing_s") or {}).get("protocol") or 0.0))
    return {k: round(statistics.median(v) * 1000 / n_train, 2) for k, v in sorted(by.items())}
