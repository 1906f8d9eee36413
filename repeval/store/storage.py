"""Atomic file writes, sealed (checksummed) torch files and checkpoint I/O.

Every file is written to a temporary sibling, flushed, fsynced and renamed over the target, so a
run killed at any moment (kill -9) leaves either the old file or the new one, never half of one.
Temporary files carry the writer's host and pid; :func:`sweep_stale_tmp` removes those whose
writer is gone. Files get the mode the umask allows (a group can share a results folder), not
mkstemp's 0600. Checkpoints load with ``torch.load(..., weights_only=True)``; repeval's own
checkpoints and feature-cache entries are *sealed*: stored with a content hash that is verified on
load, so a file whose tensors were altered is detected, not trusted.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

SEAL_FORMAT = "repeval-sealed-1"
_HOST = socket.gethostname().replace(".", "_") or "host"


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, was altered, or does not fit the model."""


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a fresh ``O_EXCL`` temporary sibling renamed over it, so
    a symlink at ``path`` is replaced, never written through). An OSError names ``path`` itself."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):   # ENOSPC, EFBIG, EACCES: the target, not the temporary, is what failed
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    return path


def sweep_stale_tmp(*folders: str | Path) -> int:
    """Remove temporary files left under ``folders`` by writers on this host that no longer run
    (a ``kill -9``); returns how many were removed. Files of live or remote writers are kept."""
    removed = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for p in folder.rglob(".*.tmp"):
            owner = p.name.rsplit(".", 3)[-3] if p.name.count(".") >= 3 else ""
            host, _, pid = owner.rpartition("-")
            if host != _HOST or not pid.isdigit() or _alive(int(pid)):
                continue
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


MAX_JSON_BYTES = 64 << 20   # a record is a few kB; a larger file is not one of ours


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file (without following a final symlink), or None if it is one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "not found"
    return None if stat.S_ISREG(mode) else _kind(mode)


def open_regular(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that never follows a final symlink (``O_NOFOLLOW``) and never blocks on a FIFO,
    and accepts only a regular file: anything else is an OSError naming the path and what it is.
    Every file repeval opens in place (locks, logs, records read) goes through here."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(e.errno, "is a symbolic link; refusing to follow it", str(path)) from None
        why = not_regular(path) if os.path.lexists(path) else None
        if why is not None:   # e.g. a FIFO without a reader (ENXIO)
            raise OSError(errno.EINVAL, f"is {why}, not a regular file", str(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"is {_kind(st.st_mode)}, not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def read_bytes_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), at most ``limit`` of them:
    a larger file is an OSError, so a hostile file can neither hang nor exhaust memory."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB", str(path))
    return data


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file (a regular file of at most ``limit`` bytes); ValueError for bad or too deeply
    nested JSON, OSError for anything that is not such a file."""
    text = read_bytes_bounded(path, limit).decode("utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise CheckpointError(f"checkpoint not found: {path}")
        raise CheckpointError(f"checkpoint {path} is {_kind(path.stat().st_mode)}, not a file")
    try:
        with warnings.catch_warnings():   # torch warns about unusual pickle protocols: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, pickle with code, truncated file ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {first}") from None


def _update_tree(h: "hashlib._Hash", obj: Any) -> None:
    """Feed a nested structure of dicts, lists, tensors and scalars into ``h``, order-stable."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(repr(k).encode())
            _update_tree(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _update_tree(h, v)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def tree_hash(obj: Any) -> str:
    """SHA-256 of a nested structure of tensors and plain values (full length, hex)."""
    h = hashlib.sha256()
    _update_tree(h, obj)
    return h.hexdigest()


def save_sealed(path: str | Path, payload: Any) -> Path:
    """Atomically save ``payload`` with its :func:`tree_hash`, verified by :func:`load_sealed`."""
    return atomic_torch_save(path, {"format": SEAL_FORMAT, "sha256": tree_hash(payload), "payload": payload})


def load_sealed(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_sealed`; a file that is not sealed or whose content does
    not match its hash is a :class:`CheckpointError` naming the file."""
    obj = load_checkpoint(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != SEAL_FORMAT or "payload" not in obj:
        raise CheckpointError(f"{path} is not a sealed repeval file (written by another version or tool)")
    if tree_hash(obj["payload"]) != obj.get("sha256"):
        raise CheckpointError(f"{path} fails its checksum: its content was altered or corrupted")
    return obj["payload"]


def state_dict_hash(state: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict (keys, dtypes, shapes, values): the identity of an encoder."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(str(t.dtype).encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def architecture_signature(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's keys, dtypes and shapes only: changes when the architecture does."""
    sig = [(k, str(v.dtype), tuple(v.shape)) for k, v in sorted(state.items()) if isinstance(v, torch.Tensor)]
    return hashlib.sha256(repr(sig).encode()).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """SHA-256 (16 hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
