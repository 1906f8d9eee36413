"""``repeval run --jobs N`` on this host without a launcher: the models of one run spread over N
worker processes, each running whole models (:func:`repeval.engine.runner.model_turn`) one after
another with ``threads`` torch threads.

Many small models gain most: their protocols' products are too small to keep two threads busy,
and MINE's critic runs on one (:mod:`protocols.mine`), so one process leaves a core idle much of
the time. The workers are spawned once per run (torch imported, builtins, ``--plugin`` files,
``--pretrained`` and ``--backbone`` registered, the dataset loaded once each) and report back
through one queue: each model's plan, its progress ticks (the parent's overall line and ETA) and
its trained epochs' losses (``--tensorboard``); each returns its
:class:`~repeval.engine.runner.RunSummary`. Records, checkpoints and features go through the same
files and per-model locks as ever, so an interrupted run resumes the same way. The runner hands
them the models that owe work, longest estimate first (so the workers end together), and checks
the others itself. The workers are started before this process loads the data and plans the run.
A worker left with no model helps one that is still evaluating, once its snapshot and features
are on disk (:func:`repeval.engine.runner.help_model`): the two claim its calls
(``WORKDIR/claims/<run>/``, removed when the run ends) from either end, so the run's last model
is not computed by one worker while the other waits. A user error in a worker (a broken encoder,
an unreadable record) stops the run as it would inline; Ctrl-C or SIGTERM stops the workers
cleanly (finished records stay); a worker that dies (killed, out of memory) stops the run with
one line naming the models it left unfinished.

A model's numbers depend on its thread count (float rounding of the parallel reductions), which
is ``threads`` here: the default (:func:`default_jobs`) depends only on the command line and the
host, never on how many models are left, so a resumed run ends with the numbers of an uninterrupted one.
"""
from __future__ import annotations

import multiprocessing
import shutil
import signal
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from ..store.progress import Progress, setup_logging
from ..store.records import ResultsLayout

POLL_S = 0.2
SHARE_MIN = 3     # records a running model must still owe for an idle worker to help it


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its model (killed, out of memory)."""


def default_jobs(device: str, turns: int) -> int:
    """Worker processes when ``--jobs`` is not given: one per torch thread on CPU when the command
    asks for two or more (model, training seed) turns, else 1 (inline, every thread on the one
    model); 1 on a GPU."""
    if torch.device(device).type != "cpu" or turns < 2:
        return 1
    return max(1, torch.get_num_threads())


@dataclass(frozen=True)
class WorkerSetup:
    """What a spawned worker repeats of its parent before running models (all picklable)."""

    load: Callable               # () -> Dataset, e.g. functools.partial(load_dataset, spec, root, ...)
    threads: int                 # torch threads per worker
    logging: tuple               # (verbosity, log file): repeval.store.progress.current_setup()
    plugins: tuple[str, ...] = ()
    pretrained: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    download: bool = False


_WORKER: dict = {}


def _init(setup: WorkerSetup, queue) -> None:
    from ..plugin.discovery import load_builtins
    from ..plugin.loader import register_plugins

    setup_logging(*setup.logging)
    load_builtins()
    register_plugins(setup.plugins, setup.pretrained, setup.backbones, setup.download)
    torch.set_num_threads(setup.threads)
    tqdm.set_lock(threading.RLock())    # not tqdm's default multiprocessing lock: a killed worker leaks no semaphore
    _WORKER.update(setup=setup, queue=queue, ds=None)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group: the parent stops us


def _stop(signum, frame):
    """SIGTERM from the parent (stopping the run): leave the model midway or the wait for the next
    one through SystemExit, so the worker's interpreter exits cleanly (its queues and semaphores
    released) instead of dying; finished records and checkpoints are on disk already. Once: a second
    SIGTERM (the pool's own clean-up after a worker died) must not interrupt the exit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(143)


def _warm() -> None:
    """A started worker's first task: load the dataset before any model is sent."""
    _dataset_and_report(None)


def _dataset_and_report(key):
    if _WORKER["ds"] is None:
        _WORKER["ds"] = _WORKER["setup"].load()
    queue = _WORKER["queue"]
    return _WORKER["ds"], lambda kind, *args: queue.put((key, kind, *args))


def _turn(key, name: str, cfg, opts, epochs: bool):
    """One model's turn in a worker; returns its RunSummary."""
    from .runner import RunSummary, model_turn

    ds, report = _dataset_and_report(key)
    opts = replace(opts, on_epoch=(lambda *a: report("epoch", *a)) if epochs else None)
    summary = RunSummary()
    model_turn(name, opts, cfg, ds, ResultsLayout(opts.results, ds.name), summary, Progress(quiet=True), report)
    return summary


def _help(key, name: str, cfg, opts, epoch: int, timing: dict, paths: list[str]):
    """A share of a model another worker is evaluating (:func:`repeval.engine.runner.help_model`)."""
    from .runner import RunSummary, help_model

    ds, report = _dataset_and_report(key)
    summary = RunSummary()
    help_model(name, opts, cfg, ds, ResultsLayout(opts.results, ds.name), summary, report, epoch, timing, paths)
    return summary


class ModelWorkers:
    """``jobs`` spawned worker processes with ``setup.threads`` torch threads each; a context
    manager that starts them on entry (:meth:`start`) and stops them on exit."""

    def __init__(self, jobs: int, setup: WorkerSetup):
        self.jobs, self.setup = jobs, setup
        self._pool = self._queue = None
        self._used = False

    def start(self) -> ModelWorkers:
        """Spawn the workers now: each imports torch, registers what this process registered and
        loads the dataset while this process loads it and plans the run."""
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._queue = ctx.SimpleQueue()    # a put is written before the worker returns: no message trails its model
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_init,
                                             initargs=(self.setup, self._queue))
            for _ in range(self.jobs):
                self._pool.submit(_warm)
        return self

    def close(self, kill: bool = False) -> None:
        """Stop the workers: once idle, or at once with ``kill`` (an error, a signal: records written
        so far stay)."""
        if self._pool is None:
            return
        pool, queue, self._pool = self._pool, self._queue, None
        if kill:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill() if not self._used else proc.terminate()   # unused: still importing, nothing to lose
        pool.shutdown(wait=True, cancel_futures=True)
        queue.close()

    def __enter__(self) -> ModelWorkers:
        return self.start()

    def __exit__(self, kind, value, tb) -> None:
        self.close(kill=kind is not None or not self._used)

    def run(self, turns: list[tuple], opts, report: Callable) -> Iterator[tuple]:
        """Run each ``(key, model, resolved config)`` of ``turns`` in a worker (at most ``jobs`` at
        once, in order); ``report(key, kind, *args)`` hears their messages here. Yields (key,
        RunSummary) as each model ends, and (None, RunSummary) as a helping worker ends (its
        records are also reported under the model's key); a worker's exception is raised here."""
        if not turns:
            return
        owner = self._pool is None     # not started by a ``with``: started and stopped here
        pool, queue, size = self.start()._pool, self._queue, self.jobs
        self._used = True
        opts = replace(opts, claims=Path(opts.workdir) / "claims" / uuid.uuid4().hex)
        turn_opts = replace(opts, on_epoch=None)
        names = {key: (name, cfg) for key, name, cfg in turns}
        started, finished = [], set()
        owed, ready, helped = {}, {}, {}     # key -> records left; key -> (epoch, timing, paths); helper future -> key

        def drain() -> None:
            while not queue.empty():
                key, kind, *args = queue.get()
                if kind == "ready":     # its snapshot and features are on disk
                    ready[key] = tuple(args)
                    continue
                if kind == "plan":
                    started.append(key)
                    owed[key] = len(args[0].tasks)
                elif kind == "record":
                    owed[key] = owed.get(key, 0) - 1
                report(key, kind, *args)

        def help_idle() -> None:
            """An idle worker helps the running model that owes the most records."""
            for _ in range(size - len(pending)):
                open_ = [k for k in ready if k not in finished and k not in helped.values()
                         and owed.get(k, 0) >= SHARE_MIN]
                if not open_:
                    return
                key = max(open_, key=lambda k: owed[k])
                fut = pool.submit(_help, key, *names[key], turn_opts, *ready[key])
                futures[fut], helped[fut] = key, key
                pending.add(fut)
        try:
            futures: dict[Future, object] = {
                pool.submit(_turn, key, name, cfg, turn_opts, opts.on_epoch is not None): key
                for key, name, cfg in turns}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                drain()
                for fut in [f for f in futures if f in done]:      # in submission order
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        running = ", ".join(k[0] for k in started if k not in finished) or "?"
                        raise WorkerDied(f"a worker process died (killed, or out of memory?) while running {running}; "
                                         "finished records are kept, rerun to resume") from None
                    if fut in helped:
                        del helped[fut]
                        yield None, result
                    else:
                        finished.add(futures[fut])
                        yield futures[fut], result
                    del futures[fut]
                help_idle()
        except BaseException:     # Ctrl-C, SIGTERM, a worker's error: records written so far stay
            self.close(kill=True)
            raise
        finally:
            if owner:
                self.close()
            shutil.rmtree(opts.claims, ignore_errors=True)
            try:
                opts.claims.parent.rmdir()   # ``claims/`` when no other run uses it
            except OSError:
                pass
