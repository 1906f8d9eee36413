"""Atomic writes, sealed checkpoints and file modes (repeval/store/storage.py)."""
import os
import subprocess
import sys

import pytest
import torch

from repeval.estimators.nets import SharedEncoder
from repeval.store.storage import (CheckpointError, atomic_torch_save, atomic_write_json, load_checkpoint, read_json,
                             state_dict_hash)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "r.json", {"x": 1})
    assert read_json(p) == {"x": 1}
    assert os.listdir(tmp_path / "a") == ["r.json"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    p = atomic_write_json(tmp_path / "r.json", {"v": "old"})

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(p, {"v": "new"})
    monkeypatch.undo()
    assert read_json(p) == {"v": "old"}
    assert os.listdir(tmp_path) == ["r.json"]


def test_checkpoint_round_trip_and_hash(tmp_path):
    torch.manual_seed(0)
    enc = SharedEncoder()
    atomic_torch_save(tmp_path / "e.pt", enc.state_dict())
    state = load_checkpoint(tmp_path / "e.pt")
    assert state_dict_hash(state) == state_dict_hash(enc.state_dict())
    torch.manual_seed(1)
    assert state_dict_hash(SharedEncoder().state_dict()) != state_dict_hash(state)


def test_corrupt_and_missing_checkpoint_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_files_are_written_with_the_umask_mode(tmp_path, tiny_run):
    code = ("import os, sys; os.umask(0o002); from repeval.cli import main; "
            f"sys.exit(main({tiny_run(models='random')!r}))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=600)
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "results").rglob("*.json")}
    modes |= {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "work").rglob("*.pt")}
    assert modes == {"0o664"}
