"""A shard: one model on one dataset — its training, feature extraction and every protocol record —
run from its :class:`~repeval.engine.session.RunRequest` inside a submitit job.

Nothing comes back through submitit's pickled return value: the shard writes its records under
``--results``, its checkpoints and features under ``--workdir``, and one outcome file (done / failed
with the last line ``repeval`` printed on stderr / requeued) in the launch folder. On preemption or
time-out submitit calls :meth:`Shard.checkpoint`, which requeues the same shard: training resumes from
its last per-epoch checkpoint and finished records are skipped.
"""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..store.locks import model_lock
from ..store.progress import log
from .layout import shard_lock_path, write_outcome


class ShardFailed(RuntimeError):
    """``repeval run`` for this shard ended with a non-zero exit status (the job is marked failed)."""


class _LastLine(io.TextIOBase):
    """Pass writes through to ``stream`` and remember the last non-empty line."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.last, self._tail = stream, None, ""

    def write(self, s: str) -> int:
        self.stream.write(s)
        lines = (self._tail + s).split("\n")
        self._tail = lines[-1]
        full = [ln.strip() for ln in lines[:-1] if ln.strip()]
        if full:
            self.last = full[-1]
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def line(self) -> str | None:
        return self._tail.strip() or self.last


@dataclass(frozen=True)
class Shard:
    model: str
    request: str            # this shard's RunRequest, as JSON (RunRequest.to_json)
    cwd: str                # the launcher's working directory (relative paths in the request)
    folder: str             # the launch folder (outcome file, shard lock)

    def __call__(self) -> int:
        from ..engine.session import RunRequest, run_request

        os.chdir(self.cwd)
        with model_lock(shard_lock_path(self.folder, self.model),
                        on_wait=lambda who: log(f"warning: [{self.model}] this shard is already running ({who}); waiting")):
            tee = _LastLine(sys.stderr)
            sys.stderr = tee
            try:
                code = run_request(RunRequest.from_json(self.request))
            finally:
                sys.stderr = tee.stream
        write_outcome(self.folder, self.model, "done" if code == 0 else "failed", code,
                      None if code == 0 else tee.line())
        if code != 0:
            raise ShardFailed(f"repeval run for model {self.model} exited {code}: {tee.line()}")
        return code

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on preemption or time-out: requeue this same shard (it resumes from disk)."""
        from submitit.helpers import DelayedSubmission

        write_outcome(self.folder, self.model, "requeued")
        return DelayedSubmission(self)


def logs_tail(path: str | Path, n_bytes: int = 4096) -> str | None:
    """The last non-empty line of a log file, or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n_bytes))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None
