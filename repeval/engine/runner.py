"""The benchmark runner: plan -> build or load -> (train to each evaluation epoch) -> extract -> evaluate.

Per model, each stage a function:

1. :func:`plan_model` builds the family with a seeded initialisation, reads its tap names from one
   forward, computes the encoder's identity (:func:`repeval.plugin.zoo.encoder_identity`) and lists the
   records it owes, one per (epoch, protocol, tap, seed); a valid record with the same identity is
   present and skipped. A model that owes nothing is not trained, loaded or extracted. Every model is
   planned once before any runs (:func:`first_pass`: the run's estimate, :mod:`repeval.engine.estimate`, and
   its overall progress line); each model's records are checked again under its lock.
2. :func:`encoder_at` brings the encoder to an evaluation epoch: as built, from that epoch's kept
   snapshot, or by training on from the per-epoch checkpoint (resumable, sealed).
3. :func:`extract_features` extracts every tap once per (encoder weights, dataset, split) into the
   feature cache.
4. :func:`evaluate` runs each owed record's protocol and writes the record atomically. A failing
   protocol writes a record with ``success: false`` (never over a successful one) and the run goes
   on; a diverging model, a bad checkpoint or a folder that cannot be written is reported in one
   line and the run goes on with the next model.

A successful record of another identity at a record's path (a changed ``--set``, new weights, a
bumped ``version``) is kept and reported until ``--rerun`` or ``--force`` asks for it; records are
found through :meth:`repeval.store.records.ResultsLayout.scan`, the walker ``repeval table`` uses.
"""
from __future__ import annotations

import errno
import hashlib
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..config import ConfigError, TrainConfig, config_hash, make_config, to_dict
from ..data import Dataset
from ..estimators.spectrum import spectrum
from ..plugin.family import Family
from ..plugin.protocol import ProtocolFailure, ProtocolInput, ProtocolSpec, Split, code_tap
from ..plugin.zoo import ModelSpec, encoder_identity, family_sections
from ..registry import MODELS, PROTOCOLS, did_you_mean
from ..seeding import derive_seed, generator, seed_everything
from ..store.guards import describe_os_error
from ..store.locks import claim, model_lock, model_lock_path
from ..store.progress import Progress, log
from ..store.provenance import provenance
from ..store.records import LINK_NOTE, SCHEMA, Record, RecordError, ResultsLayout, train_seed
from ..store.storage import CheckpointError, state_dict_hash, sweep_stale_tmp
from .estimate import (Estimate, Overall, Owed, Timings, Work, describe, describe_total, estimate, fmt_seconds,
                       in_workers, source_of)
from .features import cached_features, extract, tap_names
from .presets import Preset
from .train import DivergenceError, load_snapshot, train


MAX_SEEDS = 100   # seeds per protocol: the paper uses 3 (probes) and 5 (SVM)


@dataclass
class RunOptions:
    models: list[str]
    protocols: list[str]
    preset: Preset
    overrides: dict = field(default_factory=dict)   # section -> {key: value} from --set
    seeds: int | None = None                        # None: each protocol's default
    device: str = "cpu"
    workdir: Path = Path(".repeval")
    results: Path = Path("results")
    quiet: bool = False
    force: bool = False                             # recompute everything requested (retrain too)
    rerun: tuple[str, ...] = ()                     # "MODEL" (retrain + re-evaluate) or "MODEL/PROTOCOL"
    dry_run: bool = False                           # print the plan, compute nothing
    train_only: bool = False                        # train (and keep every evaluation epoch), evaluate nothing
    train_seeds: tuple[int, ...] = ()               # one encoder per training seed (default: train.seed)
    jobs: int = 1                                   # worker processes sharing the models (estimates say so)
    claims: Path | None = None                      # with workers: where record groups are claimed (evaluate)
    on_epoch: Callable | None = None                # (model, epoch, mean losses) after training, e.g. TensorBoardLog


@dataclass
class RunSummary:
    written: list[Path] = field(default_factory=list)
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)   # invalid records found (recomputed)

    def merge(self, other: RunSummary) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.failures += other.failures
        self.invalid += other.invalid


@dataclass(frozen=True)
class Resolved:
    """Every configuration of a run, validated before any data is loaded."""

    train: TrainConfig
    protocols: dict                 # protocol name -> frozen config
    families: dict                  # model name -> its family's frozen config (None: a frozen encoder)


@dataclass
class Task:
    protocol: ProtocolSpec
    tap: str
    seed: int
    epoch: int
    config: dict
    path: Path


@dataclass
class ModelPlan:
    name: str
    spec: ModelSpec
    family: Family
    identity: dict
    train_key: str
    taps: list[str]
    epochs: tuple[int, ...]
    tasks: list[Task]
    present: int
    retrain: bool
    kept: dict = field(default_factory=dict)   # protocol -> successful records of another identity, kept
    trains: bool = True                        # the family trains (``family`` is None in a first-pass plan)


def resolve_configs(opts: RunOptions) -> Resolved:
    """Validate every section (preset + --set) before anything runs: unknown sections and keys,
    out-of-range values, a preset without a budget for a requested protocol, bad seeds or device."""
    sections = {k: dict(v) for k, v in opts.preset.sections.items()}
    for sec, kv in opts.overrides.items():
        sections.setdefault(sec, {}).update(kv)
    fams = family_sections()
    valid = {"train", *PROTOCOLS.names(), *fams}
    for sec in opts.overrides:
        if sec not in valid:
            raise ConfigError(f"bad config section '{sec}'{did_you_mean(sec, valid)}; "
                              f"valid sections: {', '.join(sorted(valid))}")
    train_cfg = make_config(TrainConfig, sections.get("train"), "train")
    proto_cfgs = {}
    for name in opts.protocols:
        spec: ProtocolSpec = PROTOCOLS.get(name)
        if name not in sections and spec.config_cls.__dataclass_fields__:
            raise ConfigError(f"preset '{opts.preset.name}' has no budget for protocol '{name}' "
                              f"(add a '{name}' section to the preset, or --set {name}.KEY=VALUE)")
        proto_cfgs[name] = make_config(spec.config_cls, sections.get(name), name)
    for name in set(opts.overrides) & set(PROTOCOLS.names()) - set(opts.protocols):   # --set of a protocol not run:
        make_config(PROTOCOLS.get(name).config_cls, sections.get(name), name)         # still checked
    overrides = {sec: kv for sec, kv in sections.items() if sec in fams}
    families = {m: MODELS.get(m).family_config(overrides) for m in opts.models}
    if opts.seeds is not None and not 1 <= opts.seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be in [1, {MAX_SEEDS}], got {opts.seeds}")
    if (any(t < 0 for t in opts.train_seeds) or len(set(opts.train_seeds)) != len(opts.train_seeds)
            or len(opts.train_seeds) > MAX_SEEDS):
        raise ConfigError(f"--train-seeds must be distinct integers >= 0 (at most {MAX_SEEDS} of them), "
                          f"got {list(opts.train_seeds)[:10]}")
    _check_device(opts.device)
    for item in opts.rerun:
        model, _, proto = item.partition("/")
        if model not in opts.models:
            raise ConfigError(f"--rerun {item}: model '{model}' is not among the requested models")
        if proto and proto not in opts.protocols:
            raise ConfigError(f"--rerun {item}: protocol '{proto}' is not among the requested protocols")
    return Resolved(train_cfg, proto_cfgs, families)


def _check_device(device: str) -> None:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: only cpu and cuda are supported")


def check_writable(*folders: Path) -> None:
    """Fail before any training when a results or work folder cannot be written (OSError, one line)."""
    for folder in folders:
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".repeval-write-check-"):
                pass
        except OSError as e:
            raise OSError(e.errno, f"cannot write to {folder} ({e.strerror})") from None


def model_dir(opts: RunOptions, ds: Dataset, name: str, train_key: str) -> Path:
    return Path(opts.workdir) / "models" / ds.name / f"{name}-{train_key}"


def run(opts: RunOptions, ds: Dataset, workers=None) -> RunSummary:
    """Run every requested model through every requested protocol on ``ds``: one model after
    another here, or spread over ``workers`` (a :class:`repeval.engine.workers.ModelWorkers`;
    a dry run stays here)."""
    cfg = resolve_configs(opts)
    layout = ResultsLayout(opts.results, ds.name)
    summary = RunSummary()
    if not opts.dry_run:
        check_writable(layout.root, Path(opts.workdir))
        sweep_stale_tmp(layout.root, Path(opts.workdir))
    prog = Progress(quiet=opts.quiet)
    runs = [(n, c) for n in dict.fromkeys(opts.models)      # a model named twice runs once
            for c in _per_train_seed(cfg, opts.train_seeds)]
    first, timings = first_pass(runs, opts, ds, layout)
    overall, ests = None, {}
    if not opts.dry_run and not opts.train_only:
        ests = {k: estimate(work_of(p, opts, c, ds), timings)
                for (k, p), (_, c) in zip(first.items(), runs) if p is not None}
        overall = _start_overall(ests, timings, opts, prog)
    estimates = []

    def report(key, kind: str, *args) -> None:
        """A model's turn reports: ``"plan"`` (its work, found under its lock), ``"epoch"`` (model,
        epoch, mean losses: ``on_epoch``) or progress (``"train"``, ``"extract"``, ``"record"``)."""
        if kind == "epoch":
            opts.on_epoch(*args)
        elif overall is None or kind == "ready":
            return
        elif kind == "plan":
            overall.replan(key, estimate(args[0], timings))
        else:
            overall.advance(key, kind, *args)

    def here(key, name: str, cfg: Resolved) -> None:
        try:
            model_turn(name, opts, cfg, ds, layout, summary, prog, lambda kind, *a: report(key, kind, *a),
                       earlier=first[key], estimates=estimates, timings=timings)
        finally:
            if overall is not None:
                overall.model_done(key)

    turns = [(key, name, cfg) for key, (name, cfg) in zip(first, runs)]
    try:
        if workers is None or opts.dry_run:
            for turn in turns:
                here(*turn)
        else:   # a model with nothing to do is checked here; the others go longest first, so the workers end together
            idle = {k for k, p in first.items() if p is not None and not (p.tasks or p.retrain or opts.train_only)}
            for turn in turns:
                if turn[0] in idle:
                    here(*turn)
            rest = sorted((t for t in turns if t[0] not in idle), key=lambda t: -ests[t[0]].total if t[0] in ests else 0)
            for key, result in workers.run(rest, opts, report):
                summary.merge(result)
                if overall is not None and key is not None:   # None: a helping worker's share
                    overall.model_done(key)
    finally:
        if overall is not None:
            overall.close()
    if opts.dry_run:
        print(describe_total(estimates, timings, opts.jobs))
    return summary


def model_turn(name: str, opts: RunOptions, cfg: Resolved, ds: Dataset, layout: ResultsLayout, summary: RunSummary,
               prog: Progress, report: Callable, earlier: ModelPlan | None = None, estimates: list | None = None,
               timings: Timings | None = None) -> None:
    """One model's turn (in this process or in a worker, :mod:`repeval.engine.workers`): under its
    lock, plan it again, then describe it (``--dry-run``), train it (``--train-only``) or run it.
    ``report(kind, *args)`` hears of its work (see :func:`run`). A diverging model, a bad checkpoint
    or a folder that cannot be written goes into ``summary.failures`` and the run goes on."""
    with _model_errors(name, opts, summary):
        lock = nullcontext() if opts.dry_run else model_lock(
            model_lock_path(opts.workdir, ds.name, name),
            on_wait=lambda who: log(f"warning: [{name}] {who} is running this model; waiting"))
        with lock:   # a second process on this model waits, then finds its records present
            plan = plan_model(name, opts, cfg, ds, layout, summary, earlier=earlier)
            work = work_of(plan, opts, cfg, ds)
            report("plan", work)
            if opts.dry_run:   # before --train-only: a dry run never computes
                estimates.append(estimate(work, timings))
                describe_plan(plan, opts, ds, describe(estimates[-1], timings))
            elif opts.train_only:
                train_model(plan, opts, cfg, ds, prog, report)
            elif not plan.tasks:
                log(f"[{name}] all {plan.present} records present: nothing to train, extract or evaluate",
                    opts.quiet)
            else:
                run_model(plan, opts, cfg, ds, layout, summary, prog, report)


@contextmanager
def _model_errors(name: str, opts: RunOptions, summary: RunSummary):
    """A diverging model, a bad checkpoint or an unwritable folder (a full disk) ends the model's
    turn with one line in ``summary.failures``; the run goes on."""
    try:
        yield
    except (DivergenceError, CheckpointError, OSError) as e:
        why = describe_os_error(e, {"results": Path(opts.results), "work": Path(opts.workdir)}) \
            if isinstance(e, OSError) else str(e)
        msg = f"{name}: {'training diverged: ' if isinstance(e, DivergenceError) else ''}{why}"
        log(f"error: {msg}; continuing with the next model")
        summary.failures.append(msg)


def help_model(name: str, opts: RunOptions, cfg: Resolved, ds: Dataset, layout: ResultsLayout,
               summary: RunSummary, report: Callable, epoch: int, timing: dict, paths: list[str]) -> None:
    """A second worker's share of a model that another worker is evaluating (``--jobs``: a worker
    with no model left helps, :mod:`repeval.engine.workers`): of the records ``paths`` that worker
    evaluates at ``epoch``, in the same calls, those nobody has claimed, last first, from the
    snapshot and cached features it left, with its ``timing`` (training and extraction seconds) in
    each record. Nothing is trained or extracted here: without them there is nothing to do. The
    same inputs, seeds and thread count give the numbers the other worker would have written; what
    cannot be read here is left to that worker."""
    try:
        plan, wanted = _owed(_build(name, cfg, ds), opts, cfg, ds, layout, {}), set(paths)
        tasks = [t for t in plan.tasks if str(t.path) in wanted]
        family = plan.family.to(torch.device(opts.device))
        trained, snap = family.trains and epoch > 0, model_dir(opts, ds, name, plan.train_key) / f"epoch-{epoch}.pt"
        if not tasks or (trained and not snap.exists()):
            return
        history = load_snapshot(family, snap, opts.device) if trained else []
        feats, _ = extract_features(family.encoder.eval(), name, ds, opts, torch.device(opts.device),
                                    Progress(quiet=True), only_cached=True)
    except (CheckpointError, OSError, RecordError):
        return
    if feats is not None:
        before = len(summary.written)
        with _model_errors(name, opts, summary):
            evaluate(plan, tasks, feats, history, ds, opts, cfg, layout, summary, Progress(quiet=True), timing,
                     on_record=lambda: report("record"), reverse=True)
        if len(summary.written) > before:
            log(f"[{name}] epoch {epoch}: {len(summary.written) - before} records computed by a second worker",
                opts.quiet)


def first_pass(runs: list, opts: RunOptions, ds: Dataset, layout: ResultsLayout) -> tuple[dict, Timings]:
    """Every model's plan before any runs (for the run's estimate and overall progress line), and the
    past timings of the results folder, from one walk over its records.

    Returns {(model, training seed): plan or None} in run order and the timings. The plans hold no
    family (built, read and dropped) and are advisory: each model's records are checked again under
    its lock (:func:`plan_model` with ``earlier``). A model that cannot be planned here (a broken
    encoder, an unreadable folder) gets None, and fails in its turn as it always did."""
    found, _ = layout.scan()
    timings = Timings.from_records(found.values(), where=str(layout.root), device=opts.device,
                                   n_train=int(ds.x_train.shape[0]))
    by_model: dict[str, dict] = {}
    for path, rec in found.items():
        by_model.setdefault(path.relative_to(layout.records_dir).parts[0], {})[path] = rec
    first = {}
    for name, cfg in runs:
        try:
            plan = replace(_build(name, cfg, ds), family=None)
            first[(name, cfg.train.seed)] = _owed(plan, opts, cfg, ds, layout, by_model.get(name, {}))
        except Exception:      # (not KeyboardInterrupt) reported when the model's turn comes
            first[(name, cfg.train.seed)] = None
    return first, timings


def work_of(plan: ModelPlan, opts: RunOptions, cfg: Resolved, ds: Dataset) -> Work:
    """What ``plan`` owes, in the estimator's terms (records, training epochs left, extractions)."""
    need = sorted({t.epoch for t in plan.tasks})
    train_epochs = 0
    if plan.trains and need and need[-1] > 0:
        mdir = model_dir(opts, ds, plan.name, plan.train_key)
        kept = [e for e in plan.epochs if 0 < e <= need[-1] and (mdir / f"epoch-{e}.pt").exists()]
        train_epochs = need[-1] - (0 if plan.retrain else max(kept, default=0))
    n_train, n_test = int(ds.x_train.shape[0]), int(ds.x_test.shape[0])
    cap = cfg.train.max_train
    return Work(plan.name, tuple(Owed(t.protocol.name, t.tap, t.protocol.version, t.config["protocol_config"])
                                 for t in plan.tasks),
                train_epochs=train_epochs, train_images=min(n_train, cap) if cap else n_train,
                extracts=len(need), images=n_train + n_test, n_train=n_train)


def _start_overall(ests: dict[tuple, Estimate], timings: Timings, opts: RunOptions, prog: Progress) -> Overall | None:
    """The overall progress line, when the first pass found records to compute (with worker
    processes, the estimate is also shared among them)."""
    n = sum(len(e.records) for e in ests.values())
    if not n:
        return None
    models, total = sum(1 for e in ests.values() if e.records), sum(e.total for e in ests.values())
    log(f"[overall] {n} records to compute over {models} model(s), estimated {fmt_seconds(total)}"
        + in_workers(total, opts.jobs, models) + f" ({source_of(list(ests.values()), timings)})", opts.quiet)
    return Overall(ests, prog, quiet=opts.quiet)


def _per_train_seed(cfg: Resolved, seeds: tuple[int, ...]) -> list[Resolved]:
    """The run's configuration once per requested training seed (``train.seed`` when none)."""
    return [replace(cfg, train=replace(cfg.train, seed=t)) for t in seeds] or [cfg]


def _wants(opts: RunOptions, model: str, protocol: str | None = None) -> bool:
    """Is (model[, protocol]) to be recomputed on purpose (--force / --rerun)?"""
    if opts.force:
        return True
    return any(r == model or (protocol is not None and r == f"{model}/{protocol}") for r in opts.rerun)


def plan_model(name: str, opts: RunOptions, cfg: Resolved, ds: Dataset, layout: ResultsLayout,
               summary: RunSummary, earlier: ModelPlan | None = None) -> ModelPlan:
    """Stage 1: build the model, compute its identity and list the records it still owes.

    ``earlier``: this model's plan from the run's first pass (:func:`first_pass`); its records are
    scanned again (the caller holds the model's lock) and the family is built afresh only when there
    is work to do, seeded just before training as always."""
    if (layout.records_dir / name).is_symlink():
        raise OSError(errno.ELOOP, LINK_NOTE, str(layout.records_dir / name))
    found, problems = layout.scan(name)
    plan = None
    if earlier is not None:
        plan = _owed(earlier, opts, cfg, ds, layout, found)
        if not opts.dry_run and (plan.tasks or opts.train_only):
            plan = None
    if plan is None:
        plan = _owed(_build(name, cfg, ds), opts, cfg, ds, layout, found)
    owed = {t.path for t in plan.tasks}
    for line in problems:
        log(f"warning: invalid record ({'recomputed' if any(str(p) in line for p in owed) else 'ignored'}): {line}")
    summary.invalid += problems
    for pname, n in plan.kept.items():
        msg = (f"{name}/{pname}: {n} successful record(s) under {layout.records_dir / name / pname} "
               f"hold another configuration; kept (--rerun {name}/{pname} replaces them)")
        if opts.dry_run:      # the plan reports it; a dry run computes nothing, so nothing failed
            log(f"warning: {msg}")
        else:
            summary.failures.append(msg)
            log(f"error: {msg}")
    summary.skipped += plan.present
    return plan


def _build(name: str, cfg: Resolved, ds: Dataset) -> ModelPlan:
    """The model built with its seeded initialisation, its taps and identity; no records listed yet."""
    spec: ModelSpec = MODELS.get(name)
    seed_everything(derive_seed(cfg.train.seed, "init", name))
    family = spec.build(cfg.train, ds.n_classes, ds.x_train.shape[1], cfg.families.get(name))
    taps = tap_names(family.encoder, ds.x_test[:2], name)
    identity = encoder_identity(spec, family)
    train_key = config_hash({"model": name, "encoder": identity, "dataset": ds.name,
                             "data_fingerprint": ds.fingerprint})
    trains = family.trains and cfg.train.epochs > 0
    epochs = cfg.train.eval_points() if trains else (0,)
    return ModelPlan(name, spec, family, identity, train_key, taps, epochs, [], 0, retrain=False,
                     trains=family.trains)


def _owed(plan: ModelPlan, opts: RunOptions, cfg: Resolved, ds: Dataset, layout: ResultsLayout,
          found: dict) -> ModelPlan:
    """``plan`` with the records it owes given the valid records ``found`` (path -> record)."""
    name, identity, taps, epochs = plan.name, plan.identity, plan.taps, plan.epochs
    tasks, present, kept = [], 0, Counter()
    for epoch in epochs:
        for pname, pcfg in cfg.protocols.items():
            pspec: ProtocolSpec = PROTOCOLS.get(pname)
            if epoch != epochs[-1] and not pspec.every_epoch:
                continue
            for tap in (taps if pspec.taps == "all" else [code_tap(taps)]):
                for seed in range(opts.seeds if opts.seeds is not None else pspec.seeds):
                    config = {"schema": SCHEMA, "model": name, "dataset": ds.name,
                              "data_fingerprint": ds.fingerprint, "encoder": identity, "epoch": epoch,
                              "protocol": pname, "protocol_version": pspec.version,
                              "protocol_config": to_dict(pcfg), "tap": tap, "seed": seed}
                    path = layout.record(name, pname, tap, seed, epoch, train_seed(config))
                    old = found.get(path)
                    if old is not None and old.success and not _wants(opts, name, pname):
                        if old.config_hash == config_hash(config):
                            present += 1
                        else:   # another identity's result is never replaced unless asked for
                            kept[pname] += 1
                        continue
                    tasks.append(Task(pspec, tap, seed, epoch, config, path))
    return replace(plan, tasks=tasks, present=present, kept=dict(kept), retrain=_wants(opts, name))


def describe_plan(plan: ModelPlan, opts: RunOptions, ds: Dataset, estimate_line: str = "") -> None:
    """``--dry-run``: what would be trained, extracted and evaluated, and what is already present."""
    need = sorted({t.epoch for t in plan.tasks})
    ckpt = model_dir(opts, ds, plan.name, plan.train_key) / "train.pt"
    lines = [f"[{plan.name}] {plan.present} records present, {len(plan.tasks)} to compute"
             + "".join(f", {n} {p} records of another configuration kept" for p, n in plan.kept.items())]
    if need and plan.trains and need[-1] > 0:
        lines.append(f"  train to epoch {need[-1]} (checkpoint {ckpt}: "
                     f"{'exists, resumes' if ckpt.exists() and not plan.retrain else 'none, from scratch'})")
    for e in need:
        tasks = [t for t in plan.tasks if t.epoch == e]
        protos = sorted({t.protocol.name for t in tasks})
        lines.append(f"  epoch {e}: extract {len(plan.taps)} taps, evaluate {len(tasks)} records ({', '.join(protos)})")
    if estimate_line and plan.tasks:
        lines.append(estimate_line)
    print("\n".join(lines))


def train_model(plan: ModelPlan, opts: RunOptions, cfg: Resolved, ds: Dataset, prog: Progress,
                report: Callable = lambda kind, *a: None) -> None:
    """``--train-only``: bring a trained family to its last epoch, keeping each evaluation epoch's
    snapshot, so that a later run (here or elsewhere) only extracts and evaluates."""
    if not plan.family.trains or plan.epochs[-1] == 0:
        return
    family, device, mdir = _prepare(plan, opts, ds)
    if (mdir / f"epoch-{plan.epochs[-1]}.pt").exists():
        log(f"[{plan.name}] trained to epoch {plan.epochs[-1]} already", opts.quiet)
        return
    encoder_at(family, plan.epochs[-1], plan, opts, cfg, mdir, _training_subset(ds, cfg.train, device), prog, report)
    log(f"[{plan.name}] trained to epoch {plan.epochs[-1]}: {mdir}", opts.quiet)


def run_model(plan: ModelPlan, opts: RunOptions, cfg: Resolved, ds: Dataset, layout: ResultsLayout,
              summary: RunSummary, prog: Progress, report: Callable = lambda kind, *a: None) -> None:
    """Stages 2-4 for one model: for each epoch that owes records, encoder -> features -> records.

    ``report(part, share)`` hears of the work done (the run's overall progress line): a share of
    the training (``"train"``) or extraction (``"extract"``) left, or a ``"record"``; and
    ``report("epoch", model, epoch, losses)`` of each trained epoch's mean losses."""
    family, device, mdir = _prepare(plan, opts, ds)
    need = sorted({t.epoch for t in plan.tasks})
    train_data = None
    for i, epoch in enumerate(need):
        t0 = time.time()
        if family.trains and epoch > 0 and train_data is None and not (mdir / f"epoch-{epoch}.pt").exists():
            train_data = _training_subset(ds, cfg.train, device)
        history = encoder_at(family, epoch, plan, opts, cfg, mdir, train_data, prog, report)
        train_s = time.time() - t0
        report("train", (epoch - (need[i - 1] if i else 0)) / max(need[-1] - (need[i - 1] if i else 0), 1))
        t0 = time.time()
        feats, hit = extract_features(family.encoder.eval(), plan.name, ds, opts, device, prog,
                                      refresh=plan.retrain)
        extract_s = time.time() - t0
        report("extract", 1 / (len(need) - i))
        timing = {"train": round(train_s, 3), "extract": round(extract_s, 3), "features_cached": hit}
        tasks = [t for t in plan.tasks if t.epoch == epoch]
        report("ready", epoch, timing, [str(t.path) for t in tasks])   # snapshot and features on disk: help_model
        log(f"[{plan.name}] epoch {epoch}: encoder ready ({train_s:.0f} s), features "
            f"{'cached' if hit else 'extracted'} ({extract_s:.0f} s); {len(tasks)} records to run", opts.quiet)
        evaluate(plan, tasks, feats, history, ds, opts, cfg, layout, summary, prog, timing,
                 on_record=lambda: report("record"))


def _prepare(plan: ModelPlan, opts: RunOptions, ds: Dataset) -> tuple[Family, torch.device, Path]:
    """The family on the run's device and its checkpoint folder (emptied for a retrain)."""
    device = torch.device(opts.device)
    mdir = model_dir(opts, ds, plan.name, plan.train_key)
    if plan.retrain and mdir.exists():
        shutil.rmtree(mdir)
    return plan.family.to(device), device, mdir


def encoder_at(family: Family, epoch: int, plan: ModelPlan, opts: RunOptions, cfg: Resolved, mdir: Path,
               train_data, prog: Progress, report: Callable = lambda kind, *a: None) -> list[dict]:
    """Stage 2: put ``family`` in its state after ``epoch`` epochs; returns the loss history so far
    (each epoch's mean losses reported as ``report("epoch", model, epoch, losses)`` when ``on_epoch``
    listens)."""
    if not family.trains or epoch == 0:
        return []
    snap = mdir / f"epoch-{epoch}.pt"
    if snap.exists():
        return load_snapshot(family, snap, opts.device)
    x, y = train_data
    points = set(plan.epochs)
    t0 = time.time()
    with prog.bar(total=epoch, desc=f"{plan.name} train", unit="epoch") as bar:
        def on_step(ep, step, steps, losses):
            if step == steps - 1:
                bar.n = ep + 1
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:3]}, refresh=True)
                log(f"[{plan.name}] epoch {ep + 1}/{cfg.train.epochs} "
                    + " ".join(f"{k}={v:.4g}" for k, v in losses.items()) + f" ({time.time() - t0:.0f} s)",
                    opts.quiet or not prog.disable)
        history = train(family, x, y, mdir / "train.pt", until=epoch, name=plan.name, progress=on_step,
                        keep=lambda e: mdir / f"epoch-{e}.pt" if e in points else None)
    for e, losses in enumerate(history if opts.on_epoch else [], 1):
        report("epoch", plan.name, e, losses)
    return history


def extract_features(encoder, name: str, ds: Dataset, opts: RunOptions, device, prog: Progress,
                     refresh: bool = False, only_cached: bool = False) -> tuple[dict | None, bool]:
    """Stage 3: every tap on both splits, from the cache keyed by the encoder's weights
    (``only_cached``: (None, False) when the cache lacks them)."""
    enc_hash = state_dict_hash(encoder.state_dict())
    feats, hits = {"encoder_hash": enc_hash}, []
    for split, x in (("train", ds.x_train), ("test", ds.x_test)):
        key = f"{enc_hash}-{ds.name}-{ds.fingerprint}-{split}"

        def compute(x=x, split=split):
            with prog.bar(total=x.shape[0], desc=f"{name} extract {split}", unit="img") as bar:
                return extract(encoder, x, name=name, device=device, progress=lambda n: bar.update(n - bar.n))
        feats[split], hit = cached_features(Path(opts.workdir) / "features", key, None if only_cached else compute,
                                            refresh=refresh)
        if feats[split] is None:
            return None, False
        hits.append(hit)
    feats["spectrum"] = {tap: spectrum(f) for tap, f in feats["test"].items()}
    return feats, all(hits)


def _groups(tasks: list[Task]) -> list[list[Task]]:
    """Tasks in calls: a batching protocol's consecutive seeds of one (tap, epoch) share a call."""
    out: list[list[Task]] = []
    for t in tasks:
        prev = out[-1][-1] if out else None
        if (prev is not None and t.protocol.batch is not None and prev.protocol is t.protocol
                and (prev.tap, prev.epoch) == (t.tap, t.epoch)):
            out[-1].append(t)
        else:
            out.append([t])
    return out


def _claim_name(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()


def _metrics_of(raw: dict) -> dict:
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) or torch.is_tensor(v) else v)
            for k, v in raw.items()}


def evaluate(plan: ModelPlan, tasks: list[Task], feats: dict, history: list[dict],
             ds: Dataset, opts: RunOptions, cfg: Resolved, layout: ResultsLayout, summary: RunSummary,
             prog: Progress, timing: dict, on_record: Callable | None = None, reverse: bool = False) -> None:
    """Stage 4: one record per task, written atomically as soon as it is computed (``on_record()``
    after each, written or not). A protocol registered with ``batch`` computes the seeds of one
    (tap, epoch) in one call; each of their records carries its share of the call's seconds and
    ``batched_seeds``, the number of seeds in the call.

    With ``opts.claims`` (worker processes) each call is first claimed there, and skipped, unreported,
    when another worker claimed it (:func:`help_model` runs the calls ``reverse``, last first)."""
    prov = provenance(opts.device)
    last = plan.epochs[-1]
    with prog.bar(total=len(tasks), desc=f"{plan.name} protocols", unit="record") as bar:
        groups = _groups(tasks)
        for group in reversed(groups) if reverse else groups:
            if opts.claims is not None and not claim(opts.claims, _claim_name(group[0].path)):
                bar.update(len(group))
                continue
            task, pspec = group[0], group[0].protocol
            imgs = pspec.needs_images
            stem = layout.artifact_stem(pspec.name, plan.name, task.seed, None if task.epoch == last else task.epoch)
            inp = ProtocolInput(task.tap,
                                Split(feats["train"][task.tap], ds.y_train, ds.x_train if imgs else None),
                                Split(feats["test"][task.tap], ds.y_test, ds.x_test if imgs else None),
                                ds.n_classes, stem)
            seed_everything(derive_seed(task.seed, pspec.name, task.tap))
            seeds = tuple(t.seed for t in group)
            t1 = time.time()
            try:
                pcfg = cfg.protocols[pspec.name]
                if pspec.batch is not None:
                    results = list(pspec.batch(inp, pcfg, seeds=seeds, device=opts.device))
                    if len(results) != len(seeds):
                        raise ProtocolFailure(f"{pspec.name}: batch returned {len(results)} results for "
                                              f"{len(seeds)} seeds")
                else:
                    results = [pspec.fn(inp, pcfg, seed=task.seed, device=opts.device)]
                results, errs = [_metrics_of(r) for r in results], [None] * len(group)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # a protocol failure is recorded, the run goes on
                err = f"{type(e).__name__}: {e}"
                results, errs = [{}] * len(group), [err] * len(group)
                which = f"seed {task.seed}" if len(group) == 1 else f"seeds {', '.join(map(str, seeds))}"
                log(f"error: [{plan.name}] {pspec.name} on {task.tap} ({which}, epoch {task.epoch}) failed: {err}")
                summary.failures += [f"{plan.name}/{pspec.name}/{t.tap}/seed{t.seed}/epoch{t.epoch}: {err}"
                                     for t in group]
            seconds = round((time.time() - t1) / len(group), 6)
            extra = {"batched_seeds": len(group)} if pspec.batch is not None else {}
            for t, metrics, err in zip(group, results, errs):
                record = Record(model=plan.name, display=plan.spec.display, dataset=ds.name, protocol=pspec.name,
                                tap=t.tap, seed=t.seed, epoch=t.epoch, success=err is None, metrics=metrics,
                                config=t.config, config_hash=config_hash(t.config),
                                encoder_hash=feats["encoder_hash"], error=err, dataset_note=ds.note,
                                paper_comparable=bool(getattr(ds, "paper_comparable", False)),
                                preset=opts.preset.name, history=history,
                                timing_s={"protocol": seconds, **extra, **timing},
                                provenance=prov, spectrum=feats["spectrum"][t.tap],
                                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                written = write_record(layout, t.path, record)
                bar.update(1)
                if on_record:
                    on_record()
                if not written:
                    continue
                if err is None:
                    log(f"[{plan.name}] {pspec.name}/{t.tap}/seed{t.seed}/epoch{t.epoch}: "
                        + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
                        + f" ({seconds:.0f} s)", opts.quiet)
                summary.written.append(t.path)


def write_record(layout: ResultsLayout, path: Path, record: Record) -> bool:
    """Write ``record`` at ``path`` (its own path), never through a link under ``records/``; a
    failure never replaces a successful record there (returns False, the old record stays)."""
    link = layout.link_in(path)
    if link is not None:
        raise OSError(errno.ELOOP, LINK_NOTE, str(link))
    if not record.success:
        try:
            old = layout.read_record(path) if path.exists() else None
        except RecordError:
            old = None
        if old is not None and old.success:
            log(f"warning: kept the successful record {path}; the failure above is not written over it")
            return False
    record.write(path)
    return True


def _training_subset(ds: Dataset, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels (a seeded subset with ``max_train``), moved to ``device`` once."""
    x, y = ds.x_train, ds.y_train
    if cfg.max_train and cfg.max_train < x.shape[0]:
        idx = torch.randperm(x.shape[0], generator=generator(derive_seed(cfg.seed, "subset")))[:cfg.max_train]
        x, y = x[idx], y[idx]
    return x.to(device), y.to(device)

