import errno
import os
import signal
import subprocess
import sys
import threading

import pytest

import repeval.store.locks as locks
from repeval.store.locks import LockBusy, lock_holder, model_lock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} (test holder)".encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_second_holder_is_refused_or_times_out_with_the_holders_name(tmp_path):
    path = tmp_path / "m" / "lock"
    with model_lock(path):
        assert f"pid {os.getpid()} on " in lock_holder(path)
        with pytest.raises(LockBusy, match=f"held by pid {os.getpid()}"):
            with model_lock(path, wait=False):
                pass
        with pytest.raises(LockBusy, match="still held by pid"):
            with model_lock(path, timeout=0.3, poll_s=0.05):
                pass
    assert lock_holder(path) is None
    with model_lock(path, wait=False):   # free again
        pass


def test_waiter_says_who_it_waits_for_once_then_gets_the_lock(tmp_path):
    path = tmp_path / "lock"
    release, held, seen, order = threading.Event(), threading.Event(), [], []

    def holder():
        with model_lock(path):
            held.set()
            release.wait(30)
            order.append("holder done")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(30)

    def on_wait(who):
        seen.append(who)
        release.set()          # the holder finishes only once we said we wait

    with model_lock(path, on_wait=on_wait):
        order.append("waiter in")
    t.join(30)
    assert len(seen) == 1 and seen[0].startswith(f"pid {os.getpid()} on ")
    assert order == ["holder done", "waiter in"]


def test_a_killed_holder_never_leaves_the_lock_stuck(tmp_path):
    path = tmp_path / "lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert lock_holder(path) == f"pid {proc.pid} (test holder)"
        with pytest.raises(LockBusy):
            with model_lock(path, wait=False):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_holder(path) is None
    with model_lock(path, wait=False):
        assert lock_holder(path) is not None   # held by us now; the dead holder's line is replaced
        assert "test holder" not in path.read_text()


def test_lock_holder_never_creates_files(tmp_path):
    assert lock_holder(tmp_path / "nope" / "lock") is None
    assert not (tmp_path / "nope").exists()


def test_filesystem_without_locks_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    ran = []
    with model_lock(tmp_path / "lock"):
        ran.append(1)
    assert ran == [1]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot lock" in err and "No locks available" in err



def test_unwritable_folder_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    real_open = os.open

    def read_only(path, flags, *a):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *a)
    monkeypatch.setattr(locks.os, "open", read_only)
    ran = []
    with model_lock(tmp_path / "lock"):
        ran.append(1)
    assert ran == [1] and not (tmp_path / "lock").exists()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot lock" in err and "Permission denied" in err
