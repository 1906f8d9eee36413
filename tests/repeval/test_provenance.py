"""Provenance (repeval/store/provenance.py): the commit is dirty for code changes, not for results."""
import pytest


def test_commit_is_dirty_for_code_changes_not_for_results(tmp_path):
    import shutil
    import subprocess

    from repeval.store.provenance import commit_of
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = lambda *a: subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *a], cwd=tmp_path,
                                    check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results" / "r.json").write_text("{}\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert commit_of(tmp_path) == head
    (tmp_path / "results" / "r.json").write_text('{"new": 1}\n')
    assert commit_of(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert commit_of(tmp_path) == head + "+dirty"
