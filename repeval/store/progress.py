"""Logging, progress bars and per-epoch training-loss callbacks.

Info lines go through the standard :mod:`logging` logger ``"repeval"``: the CLI shows them on stderr
(``-q``: warnings and errors only, ``-v``: debug lines too) and writes everything to ``--log-file``;
used as a library, repeval logs like any package and the application configures the handlers.
Errors on the console are one line: ``repeval: error: ...``. Progress bars (tqdm) stay quiet when
stderr is not a terminal or with ``--quiet``.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Mapping

from tqdm.auto import tqdm

from ..config import ConfigError
from .storage import open_regular

LOGGER = logging.getLogger("repeval")


def log(msg: str, quiet: bool = False) -> None:
    """An info line (a debug line when ``quiet``); a message starting ``error:`` or ``warning:`` is
    logged at that level whatever ``quiet`` says."""
    for prefix, level in (("error:", logging.ERROR), ("warning:", logging.WARNING)):
        if msg.startswith(prefix):
            LOGGER.log(level, msg[len(prefix):].strip())
            return
    LOGGER.log(logging.DEBUG if quiet else logging.INFO, msg)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"repeval: error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"repeval: warning: {msg}"
        return msg


class _ConsoleHandler(logging.Handler):
    """Writes to ``sys.stderr`` as it is at each call (so redirections and captures apply), through
    ``tqdm.write`` so that a line does not tear a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class _LogFile(logging.StreamHandler):
    """``--log-file``: appends to a regular file, never through a symlink (:func:`open_regular`). A
    write that fails (full disk, file-size limit) detaches the handler and raises one OSError naming
    the file, instead of logging's traceback on stderr."""

    def __init__(self, path: Path):
        super().__init__(os.fdopen(open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", encoding="utf-8"))
        self.path = path

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            return super().handleError(record)
        LOGGER.removeHandler(self)
        self.close()
        raise OSError(exc.errno, f"--log-file {self.path}: {exc.strerror or exc}; no longer logging to it") from None

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass
        super().close()


def setup_logging(verbosity: int = 0, log_file: str | Path | None = None) -> None:
    """Configure the ``repeval`` logger for the command line (idempotent: replaces its own handlers).

    ``verbosity``: -1 warnings and errors only, 0 info, 1 or more debug. ``log_file`` receives every
    line from debug up, with a timestamp.
    """
    for h in list(LOGGER.handlers):
        if getattr(h, "_repeval_cli", False):
            LOGGER.removeHandler(h)
            h.close()
    console = _ConsoleHandler(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
    console.setFormatter(_ConsoleFormatter())
    console._repeval_cli = True
    console._repeval_setup = (verbosity, Path(log_file) if log_file else None)   # for current_setup()
    LOGGER.addHandler(console)
    LOGGER.setLevel(logging.DEBUG if log_file or verbosity > 0 else console.level)
    LOGGER.propagate = False
    if log_file:
        path = Path(log_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = _LogFile(path)
        except OSError as e:
            raise ConfigError(f"--log-file: cannot open {path}: {e.strerror or e}") from None
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        fh._repeval_cli = True
        LOGGER.addHandler(fh)


def current_setup() -> tuple[int, Path | None]:
    """The (``verbosity``, ``log_file``) that :func:`setup_logging` was last called with (0, None when
    it was not), so a worker process can log the way its parent does."""
    for h in LOGGER.handlers:
        if getattr(h, "_repeval_cli", False) and hasattr(h, "_repeval_setup"):
            return h._repeval_setup
    return 0, None


class Progress:
    def __init__(self, quiet: bool = False):
        self.disable = quiet or not sys.stderr.isatty()

    def bar(self, **kw) -> tqdm:
        return tqdm(disable=self.disable, leave=False, dynamic_ncols=True, **kw)

    def iter(self, it, **kw):
        return tqdm(it, disable=self.disable, leave=False, dynamic_ncols=True, **kw)


class TensorBoardLog:
    """Per-epoch training losses as TensorBoard scalars ``<model>/<loss>`` at step = epoch (1-based).

    Call it as ``on_epoch(model, epoch, losses)`` with the epoch's mean losses (the history that the
    records keep); an epoch already written for a model is not written twice, so the whole history
    can be passed after each stretch of training. Needs the optional ``tensorboard`` package
    (``pip install 'repeval[tensorboard]'``).
    """

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: "
                              "pip install 'repeval[tensorboard]'") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))
        self.written: set[tuple[str, int]] = set()

    def __call__(self, model: str, epoch: int, losses: Mapping[str, float]) -> None:
        if (model, int(epoch)) in self.written:
            return
        self.written.add((model, int(epoch)))
        for k, v in losses.items():
            self.writer.add_scalar(f"{model}/{k}", float(v), int(epoch))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
