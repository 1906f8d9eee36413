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

import hashlib
import io
import json
import os
import socket
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
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
