"""One ``repeval`` process: what it registers, how it logs and fails, and a run request executed.

A run is a :class:`RunRequest`: every option of ``repeval run`` resolved (names split, the
``--config`` file read and merged under ``--set``, the preset and the dataset chosen) into one
frozen, JSON-serialisable value. The command line builds it and runs it here or hands it to the
launcher, which gives each shard a copy with one model and one device; the shard runs it here too,
so a sharded run executes exactly the inline code on the same inputs.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..config import ConfigError
from ..data import DataError, load_dataset
from ..plugin.discovery import load_builtins
from ..plugin.loader import PluginError, register_plugins
from ..registry import RegistryError
from ..store.guards import check_log_file, describe_os_error
from ..store.progress import LOGGER, TensorBoardLog, current_setup, setup_logging
from ..store.records import RecordError
from ..store.storage import CheckpointError
from .features import EncoderContractError
from .presets import PRESETS
from .runner import RunOptions, run
from .workers import ModelWorkers, WorkerDied, WorkerSetup, default_jobs

USER_ERRORS = (RegistryError, ConfigError, DataError, PluginError, CheckpointError, EncoderContractError,
               RecordError, WorkerDied)


@dataclass(frozen=True)
class RunRequest:
    """``repeval run`` with every option resolved; :meth:`to_json` / :meth:`from_json` round-trip it."""

    models: tuple[str, ...]
    protocols: tuple[str, ...]
    preset: str = "quick"
    dataset: str = "digits"                         # a dataset name, npz:DIR or imagefolder:DIR
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)   # --config file, then --set
    config: str | None = None                       # the --config file read (named in config errors)
    seeds: int | None = None
    train_seeds: tuple[int, ...] = ()
    device: str = "cpu"
    workdir: str = ".repeval"
    results: str = "results"
    data_root: str | None = None
    download: bool = False
    force: bool = False
    rerun: tuple[str, ...] = ()
    train_only: bool = False
    dry_run: bool = False
    tensorboard: str | None = None
    no_table: bool = False
    jobs: int | None = None                         # worker processes (None: workers.default_jobs)
    # the process: what it registers before running, and how it logs
    plugins: tuple[str, ...] = ()
    pretrained: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    verbose: int = 0
    quiet: bool = False
    log_file: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRequest:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})

    def for_shard(self, model: str, device: str) -> RunRequest:
        """This request for one model on one device, its own ``--rerun`` items only, no tables."""
        return replace(self, models=(model,), device=device, no_table=True, jobs=1,
                       rerun=tuple(r for r in self.rerun if r.partition("/")[0] == model))

    def folders(self) -> dict[str, Path]:
        return {"results": Path(self.results), "work": Path(self.workdir)}

    def options(self) -> RunOptions:
        """The runner's options (unvalidated: :func:`repeval.engine.runner.resolve_configs` checks them)."""
        return RunOptions(models=list(self.models), protocols=list(self.protocols), preset=PRESETS.get(self.preset),
                          overrides={k: dict(v) for k, v in self.overrides.items()}, seeds=self.seeds,
                          device=self.device, workdir=Path(self.workdir), results=Path(self.results),
                          quiet=self.quiet, force=self.force, rerun=self.rerun, dry_run=self.dry_run,
                          train_only=self.train_only, train_seeds=self.train_seeds)


@dataclass
class RunTotals:
    written: int = 0
    skipped: int = 0
    failures: int = 0
    shown: list[tuple[str, list[str]]] = field(default_factory=list)   # (dataset label, models) run

    def line(self) -> str:
        return f"{self.written} records written, {self.skipped} already present, {self.failures} failures"


def datasets_for(req: RunRequest) -> list[tuple[Callable, list[str]]]:
    """(dataset loader, models) to run: the dataset once for every model, or, for
    ``imagefolder:`` data, once per input size the models take
    (:func:`repeval.plugin.zoo.input_size_groups`)."""
    from ..plugin.zoo import input_size_groups

    models = list(req.models)
    groups = input_size_groups(models) if req.dataset.startswith("imagefolder:") else [(None, models)]
    return [(partial(load_dataset, req.dataset, req.data_root, req.download, image_size=size), group)
            for size, group in groups]


def _turns(req: RunRequest, group: list[str]) -> int:
    return len(group) * max(1, len(req.train_seeds))


def jobs_for(req: RunRequest, group: list[str]) -> int:
    """The worker processes that run ``group``: ``--jobs``, else
    :func:`repeval.engine.workers.default_jobs` (1: this process)."""
    return req.jobs if req.jobs is not None else default_jobs(req.device, _turns(req, group))


def workers_for(req: RunRequest, jobs: int, group: list[str], load: Callable) -> ModelWorkers | None:
    """``jobs`` worker processes, at most one per (model, training seed) of ``group`` (None for one,
    or a dry run: this process runs the models), each with the parent's torch threads divided by
    ``jobs``, loading the dataset with ``load``."""
    if jobs <= 1 or req.dry_run:
        return None
    setup = WorkerSetup(load, max(1, torch.get_num_threads() // jobs), current_setup(),
                        req.plugins, req.pretrained, req.backbones, req.download)
    return ModelWorkers(min(jobs, _turns(req, group)), setup)


def execute(req: RunRequest) -> RunTotals:
    """Run ``req`` here or in worker processes (models and protocols registered, options checked)."""
    opts = req.options()
    tb = opts.on_epoch = TensorBoardLog(req.tensorboard) if req.tensorboard and not req.dry_run else None
    totals = RunTotals()
    try:
        for load, group in datasets_for(req):
            jobs = jobs_for(req, group)
            workers = workers_for(req, jobs, group, load)
            with workers or nullcontext():   # started now: they import torch and load the data while this process does
                ds = load()
                summary = run(replace(opts, models=group, jobs=jobs,
                                      rerun=tuple(r for r in opts.rerun if r.partition("/")[0] in group)), ds, workers)
            totals.written += len(summary.written)
            totals.skipped += summary.skipped
            totals.failures += len(summary.failures)
            totals.shown.append((ds.name, group))
    finally:
        if tb:
            tb.close()
    return totals


def run_request(req: RunRequest) -> int:
    """A whole ``repeval run`` process for ``req`` without the tables (what a shard runs)."""
    def body() -> int:
        load_builtins()
        register_plugins(req.plugins, req.pretrained, req.backbones, req.download)
        totals = execute(req)
        if not (req.dry_run or req.train_only):
            print(totals.line(), file=sys.stderr)
        return 1 if totals.failures else 0
    return guarded("run", req.folders(), -1 if req.quiet else req.verbose, req.log_file and Path(req.log_file), body)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends): handled like Ctrl-C, exit status 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def guarded(command: str, folders: dict[str, Path], verbosity: int, log_file: Path | None,
            body: Callable[[], int], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body`` as a ``repeval`` command: logging set up, and bad input (``USER_ERRORS`` and
    ``errors``), unwritable folders, signals and a stray ``sys.exit`` each end in one line on stderr
    and an exit status; records already written stay."""
    # A handler someone else installed stays: in a submitit job (--executor slurm) SIGTERM is left
    # to submitit, whose USR2 hook checkpoints and requeues the shard. Signals: main thread only.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    ours = previous == signal.SIG_DFL and main_thread
    if ours:
        signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(signal, "SIGXFSZ") and main_thread:   # a file-size limit: an OSError naming the file, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        setup_logging(verbosity, None)
        check_log_file(log_file, folders)
        setup_logging(verbosity, log_file)
        return body()
    except USER_ERRORS + errors as e:
        LOGGER.error(str(e))
        return 2
    except OSError as e:   # unwritable or full folders, unreadable files: which file, in which folder
        LOGGER.error(describe_os_error(e, folders))
        return 2
    except SystemExit as e:   # a plugin's or protocol's sys.exit(0) is not a successful run
        if e.code not in (0, None):
            raise             # a failing exit stays one (submitit's requeue exits this way)
        LOGGER.error(f"something called sys.exit({e.code!r}) while running `{command}` "
                     "(a plugin or a user's encoder?); stopped, finished records are kept")
        return 2
    except Terminated:
        print("repeval: terminated (SIGTERM); finished records are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("repeval: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130
    finally:
        if ours:
            signal.signal(signal.SIGTERM, previous)
