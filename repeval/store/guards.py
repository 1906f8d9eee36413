"""Where the command line may write, and which of its folders a failed write was in.

Pure path logic (plus one ``lstat`` / a few bytes read), shared by ``repeval run``, ``table`` and
``status``: a ``--log-file`` never lands inside the results or work folders or on an existing
record or checkpoint, and an ``OSError`` is reported naming the folder (results or work) and the file.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import ConfigError

_DATA_MAGIC = (b"{", b"[", b"PK\x03\x04", b"\x80", b"\x93NUMPY")   # JSON, torch zip, pickle, .npy
_DATA_SUFFIXES = (".json", ".pt", ".pth", ".npz", ".npy", ".lock", ".tmp")


def _resolved(p: Path) -> Path:
    p = Path(p).expanduser()
    return p.parent.resolve() / p.name if p.name else p.resolve()


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (both resolved through symlinks)."""
    path, folder = _resolved(path), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents


def check_log_file(path: Path | None, folders: dict[str, Path]) -> None:
    """``--log-file`` must not be inside one of ``folders`` (name -> folder: results, work) nor an
    existing record, checkpoint or data file (it would be appended to): a one-line ConfigError."""
    if path is None:
        return
    for name, folder in folders.items():
        if folder is not None and inside(path, folder):
            raise ConfigError(f"--log-file {path} is inside the {name} folder {folder}; "
                              "log somewhere else (it would mix with records and checkpoints)")
    if os.path.lexists(path) and os.path.isfile(path):
        try:
            with open(path, "rb") as f:
                head = f.read(8).lstrip()
        except OSError:
            head = b""
        if Path(path).suffix.lower() in _DATA_SUFFIXES or head.startswith(_DATA_MAGIC):
            raise ConfigError(f"--log-file {path} is an existing record, checkpoint or data file; "
                              "refusing to append log lines to it")


def describe_os_error(e: OSError, folders: dict[str, Path]) -> str:
    """One line for a failed read or write: what failed, the file, and which of ``folders`` (name ->
    folder) holds it, e.g. ``No space left on device: results/digits/... (in the results folder results)``."""
    what = e.strerror or str(e)
    name = e.filename
    if not name:
        return what
    where = next((f" (in the {k} folder {v})" for k, v in folders.items() if v is not None and inside(Path(name), v)),
                 "")
    return f"{what}: {name}{where}"
