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


def test_openmp_waits_briefly_on_a_free_machine_sleeps_on_a_busy_one_and_keeps_the_users():
    from repeval.runtime import SHORT_SPIN, openmp_wait
    assert openmp_wait({}, load=0.3, cpus=2) == {"GOMP_SPINCOUNT": SHORT_SPIN}
    assert openmp_wait({}, load=1.6, cpus=2) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert openmp_wait({}, load=5.0, cpus=16) == {"GOMP_SPINCOUNT": SHORT_SPIN}
    assert openmp_wait({"OMP_WAIT_POLICY": "ACTIVE"}, load=0.0, cpus=2) == {}
    assert openmp_wait({"GOMP_SPINCOUNT": "0"}, load=9.0, cpus=2) == {}


def test_the_records_provenance_names_the_wait_settings_that_ran():
    import os

    from repeval.store.provenance import runtime
    rt = runtime()
    assert rt["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "")
    assert rt["gomp_spincount"] == os.environ.get("GOMP_SPINCOUNT", "")
    assert rt["omp_wait_policy"] or rt["gomp_spincount"]      # repeval or the user chose one
