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
the others itself. A user error in a worker (a broken encoder, an unreadable record) stops the run
as it would inline; Ctrl-C or SIGTERM stops the workers cleanly (finished records stay); a worker
that dies (killed, out of memory) stops the run with one line naming the models it left unfinished.

A model's numbers depend on its thread count (float rounding of the parallel reductions), which
is ``threads`` here: the default (:func:`default_jobs`) depends only on the command line and the
host, never on how many models are left, so a resumed run ends with the numbers of an uninterrupted one.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from ..store.progress import Progress, setup_logging
from ..store.records import ResultsLayout

POLL_S = 0.2


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


def _turn(key, name: str, cfg, opts, epochs: bool):
    """One model's turn in a worker; returns its RunSummary."""
    from .runner import RunSummary, model_turn

    if _WORKER["ds"] is None:
        _WORKER["ds"] = _WORKER["setup"].load()
    ds, queue = _WORKER["ds"], _WORKER["queue"]

    def report(kind: str, *args) -> None:
        queue.put((key, kind, *args))
    opts = replace(opts, on_epoch=(lambda *a: report("epoch", *a)) if epochs else None)
    summary = RunSummary()
    model_turn(name, opts, cfg, ds, ResultsLayout(opts.results, ds.name), summary, Progress(quiet=True), report)
    return summary


class ModelWorkers:
    """``jobs`` spawned worker processes with ``setup.threads`` torch threads each."""

    def __init__(self, jobs: int, setup: WorkerSetup):
        self.jobs, self.setup = jobs, setup

    def run(self, turns: list[tuple], opts, report: Callable) -> Iterator[tuple]:
        """Run each ``(key, model, resolved config)`` of ``turns`` in a worker (at most ``jobs`` at
        once, in order); ``report(key, kind, *args)`` hears their messages here. Yields (key,
        RunSummary) as each model ends; a worker's exception is raised here."""
        if not turns:
            return
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.SimpleQueue()    # a put is written before the worker returns: no message trails its model
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(turns)), mp_context=ctx, initializer=_init,
                                   initargs=(self.setup, queue))

        started, finished = [], set()

        def drain() -> None:
            while not queue.empty():
                message = queue.get()
                if message[1] == "plan":
                    started.append(message[0])
                report(*message)
        try:
            futures: dict[Future, object] = {
                pool.submit(_turn, key, name, cfg, replace(opts, on_epoch=None), opts.on_epoch is not None): key
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
                    finished.add(futures[fut])
                    yield futures[fut], result
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):   # Ctrl-C, SIGTERM, a worker's error:
                proc.terminate()                                          # records written so far stay
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            queue.close()
