"""Lock files that a crashed process cannot leave stuck: ``flock(2)`` advisory locks.

One lock per trained model (``WORKDIR/locks/<dataset>/<model>.lock``) makes a second process that
reaches the same model — a second shard, or the same ``repeval run`` started twice — wait until the
first is done and then find its records present, instead of training, extracting and evaluating it
again. The kernel releases an ``flock`` when its holder exits for any reason (``kill -9``,
preemption, OOM), so a lock is never stale; the file itself stays (deleting lock files races with
waiters) and holds one line naming its holder. On a filesystem without working ``flock`` (some
network filesystems mounted without lock support), or where the lock file cannot be created, the
lock is skipped with a one-line warning: records stay correct because every write is atomic, only
work may be repeated.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .progress import log
from .storage import open_regular

_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class LockRefused(OSError):
    """The lock path is a symbolic link or not a regular file: it is neither followed nor written."""


class LockBusy(RuntimeError):
    """The lock is held by another process and the caller did not wait (or waited past its timeout)."""


def model_lock_path(workdir: str | Path, dataset: str, model: str) -> Path:
    """The lock file of ``model`` on dataset label ``dataset`` under ``workdir``."""
    return Path(workdir) / "locks" / dataset / f"{model}.lock"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def holder_line() -> str:
    """What a lock file says about its holder: pid, host and start time."""
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"


@contextmanager
def model_lock(path: str | Path, wait: bool = True, timeout: float | None = None,
               on_wait: Callable[[str], None] | None = None, poll_s: float = 0.2) -> Iterator[None]:
    """Hold the exclusive lock ``path`` (created if missing) for the ``with`` block.

    If another process holds it: ``wait=False`` raises :class:`LockBusy` at once; otherwise
    ``on_wait(holder)`` is called once (``holder``: the holder's pid, host and start time) and the
    call blocks until the lock is free, or raises :class:`LockBusy` after ``timeout`` seconds.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EINVAL):   # a symlink or a non-file in its place: never written through
            raise LockRefused(f"lock file {path} {e.strerror}") from None
        # a read-only workdir: the run itself says what it cannot write, if anything
        log(f"warning: cannot lock {path} ({e.strerror}); concurrent runs on this folder may repeat work")
        yield
        return
    try:
        try:
            got = _try_lock(fd)
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
            log(f"warning: cannot lock {path} ({e.strerror}); concurrent runs on this folder may repeat work")
            yield
            return
        if not got:
            holder = _holder(fd)
            if not wait:
                raise LockBusy(f"{path} is held by {holder}")
            if on_wait is not None:
                on_wait(holder)
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while not _try_lock(fd):
                    if time.monotonic() >= deadline:
                        raise LockBusy(f"{path} is still held by {_holder(fd)} after {timeout:g} s")
                    time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder_line() + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def lock_holder(path: str | Path) -> str | None:
    """The holder's line if ``path`` is locked by a live process, else None (never creates the file)."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            if _try_lock(fd):
                return None   # free (closing the descriptor releases the probe's lock)
        except OSError:
            return None
        return _holder(fd)
    finally:
        os.close(fd)


def claim(folder: str | Path, name: str) -> bool:
    """Take ``name`` in ``folder`` for this process, unless another process took it first (an
    ``O_EXCL`` create, atomic on a local filesystem): how the worker processes of one run share a
    model's record groups (:func:`repeval.engine.runner.evaluate`). A claim is never released; the
    run that made ``folder`` removes it when it ends."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.close(open_regular(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
