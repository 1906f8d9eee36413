"""Issue 26, "Trust, round two": no record lost, overwritten or miscounted by a careless or hostile input.
One test per numbered class of the issue (each failed before the fix); the bullets are cases of the
hostile-input test in test_cli.py."""
import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from repeval.report import tables
from repeval.cli import main
from repeval.data import DataError, load_npz
from repeval.store.locks import model_lock
from repeval.store.records import Record
from repeval.registry import PROTOCOLS
from tests.helpers import read_records

pytestmark = pytest.mark.usefixtures("restore_logging")

REC = "results/digits/records/random/{p}/{tap}-seed{s}-epoch0.json"


def _err_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture
def random_run(tmp_path, tiny_run):
    """A finished run of the (untrained, cheap) random-init encoder through the mlp probe, 3 records."""
    args = tiny_run(models="random", protocols="mlp")
    assert main(args) == 0
    return args


# 1 ------------------------------------------------------------------------- no write through a symlink

def test_lock_and_log_files_never_follow_a_symlink(tmp_path, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    link = tmp_path / "locks" / "m.lock"
    link.parent.mkdir()
    link.symlink_to(outside)
    with pytest.raises(OSError, match="symbolic link"):
        with model_lock(link):
            pass
    log = tmp_path / "run.log"
    log.symlink_to(outside)
    assert main(["--log-file", str(log), "list"]) == 2
    assert outside.read_text() == "precious\n"
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    assert main(["--log-file", str(fifo), "list"]) == 2          # not a regular file: refused, no hang
    assert "not a regular file" in capsys.readouterr().err


def test_a_run_whose_lock_is_a_symlink_fails_that_model_in_one_line(tmp_path, random_run, capsys):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    lock = tmp_path / "work/locks/digits/random.lock"
    lock.unlink()
    lock.symlink_to(outside)
    capsys.readouterr()
    assert main(random_run) == 1
    err = _err_lines(capsys)
    assert outside.read_text() == "precious\n"
    assert any("random: lock file" in line and "symbolic link" in line for line in err), err


# 2 --------------------------------------------------------------- a failure never replaces a success

def test_a_failure_never_replaces_a_successful_record(tmp_path, random_run, capsys, monkeypatch):
    path = tmp_path / REC.format(p="mlp", tap="y", s=0)
    good = path.read_bytes()
    spec = PROTOCOLS.get("mlp")

    def out_of_memory(*a, **k):
        raise MemoryError("cannot allocate 4 TB")
    assert spec.batch is not None     # the probe computes its seeds in one call: fail both paths
    monkeypatch.setitem(PROTOCOLS._items, "mlp", replace(spec, fn=out_of_memory, batch=out_of_memory))
    capsys.readouterr()
    assert main(random_run + ["--rerun", "random/mlp"]) == 1
    assert path.read_bytes() == good
    assert "kept the successful record" in capsys.readouterr().err


@pytest.mark.parametrize("setting, words", [
    ("knn.k=", "knn: k must be positive integers"),
    ("knn.temperature=0", "temperature > 0"),
    ("mlp.hidden=1000000000000", "mlp.hidden must be <= 65536"),
    ("linear.weight_decays=", "linear: weight_decays >= 0 (at least one)"),
    ("svm.c_grid=" + ",".join(["1"] * 1001), "svm.c_grid needs 1 to 1000 values, got 1001"),
], ids=["knn.k empty", "knn.temperature 0", "mlp.hidden 1e12", "linear.weight_decays empty", "svm.c_grid 1001"])
def test_every_protocol_config_is_checked_when_it_resolves(tmp_path, random_run, capsys, setting, words):
    before = {p: p.read_bytes() for p in (tmp_path / "results").rglob("*.json")}
    capsys.readouterr()
    assert main(random_run + ["--set", setting, "--rerun", "random"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and words in err[0], err
    assert {p: p.read_bytes() for p in (tmp_path / "results").rglob("*.json")} == before


# 3 -------------------------------------------------------------- a log file never lands on a record

def test_log_file_inside_the_results_or_work_folder_or_on_a_checkpoint_is_refused(tmp_path, random_run, capsys):
    rec = tmp_path / REC.format(p="mlp", tap="y", s=0)
    good = rec.read_bytes()
    ckpt = tmp_path / "enc.pt"
    ckpt.write_bytes(b"PK\x03\x04 a checkpoint")
    for target, words in ((rec, "inside the results folder"), (tmp_path / "work" / "run.log", "inside the work folder"),
                          (ckpt, "existing record, checkpoint or data file")):
        capsys.readouterr()
        assert main(random_run + ["--log-file", str(target)]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and words in err[0], err
    assert rec.read_bytes() == good and ckpt.read_bytes() == b"PK\x03\x04 a checkpoint"
    assert not (tmp_path / "work" / "run.log").exists()


# 4 ----------------------------------------------------------------- table --dataset is a label only

def test_table_dataset_must_be_a_label_not_a_path(tmp_path, random_run, capsys):
    inner = tmp_path / "a" / "b" / "results"
    shutil.copytree(tmp_path / "results", inner)
    capsys.readouterr()
    assert main(["table", "--results", str(inner), "--dataset", "../..", "--no-plots"]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and "--dataset: bad dataset label name '../..'" in err[0]
    assert not list((tmp_path / "a").glob("table*")) and not list((tmp_path / "a").glob("*.csv"))


# 5 ------------------------------------------------------- a record counts only at its own path

def test_a_record_counts_only_at_the_path_its_identity_dictates(tmp_path, random_run):
    root = tmp_path / "results/digits/records"
    src = root / "random/mlp/y-seed0-epoch0.json"
    rec = json.loads(src.read_text())
    shutil.copy(src, root / "random/mlp/x.bak.json")                              # a stray copy
    (root / "ae/mlp").mkdir(parents=True)
    shutil.copy(src, root / "ae/mlp/y-seed0-epoch0.json")                          # another model's folder
    edits = {"conv-seed0-epoch0.json": {"model": "ae"}, "fc-seed0-epoch0.json": {"seed": 7}}
    for name, edit in edits.items():                                                # edited identity fields
        p = root / "random/mlp" / name
        p.write_text(json.dumps({**json.loads(p.read_text()), **edit}))
    (root / "random/mlp/y-seed0-epoch0.json").write_text(json.dumps({**rec, "success": False}))   # edited flag
    recs, problems = tables.load_records(tmp_path / "results", "digits")
    assert recs == [] and len(problems) == 5, problems
    assert all("\n" not in p for p in problems)
    assert any("x.bak.json" in p and "belongs at" in p for p in problems)
    assert any("ae/mlp/y-seed0-epoch0.json" in p and "belongs at" in p for p in problems)
    assert any("field 'model' is 'ae'" in p for p in problems) and any("field 'seed' is 7" in p for p in problems)
    assert any("success is False" in p for p in problems)


# 6 --------------------------------------------------------------------- one configuration per cell

def _mlp_record(seed: int, epochs: int, acc: float) -> dict:
    cfg = {"schema": 2, "model": "ae", "dataset": "digits", "epoch": 1, "protocol": "mlp", "tap": "conv",
           "seed": seed, "protocol_version": 1, "protocol_config": {"epochs": epochs}, "encoder": {}}
    return {"model": "ae", "display": "AE", "dataset": "digits", "protocol": "mlp", "tap": "conv", "seed": seed,
            "epoch": 1, "success": True, "metrics": {"accuracy": acc}, "config": cfg,
            "created": f"2026-01-0{seed + 1}T00:00:00"}


def test_a_cell_holds_one_configuration_and_reports_the_others():
    recs = [_mlp_record(0, 20, 90.0), _mlp_record(1, 20, 88.0), _mlp_record(2, 1, 20.0)]
    df = tables.build_table(recs, tables.TABLE1, "digits")
    cell = df[(df["model"] == "ae") & (df["column"] == "conv")].iloc[0]
    assert cell["n"] == 2 and cell["seeds"] == "0 1" and math.isclose(cell["mean"], 89.0)
    lines = tables.build.format_left_out(df)
    assert len(lines) == 1 and "seed(s) 2" in lines[0] and "another configuration" in lines[0]
    curve = tables.curve_table(recs, "digits")
    assert curve[["n", "seeds", "mean"]].values.tolist() == [[2, "0 1", 89.0]]      # the learning curve too


# 7 -------------------------------------------------- links under records/: one rule for run and table

def test_a_symlinked_model_folder_is_refused_by_run_and_table_alike(tmp_path, random_run, capsys):
    root = tmp_path / "results/digits/records"
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "random", elsewhere)
    (root / "random").symlink_to(elsewhere)
    before = {p.name: p.read_bytes() for p in elsewhere.rglob("*.json")}
    recs, problems = tables.load_records(tmp_path / "results", "digits")
    assert recs == [] and len(problems) == 1 and "symbolic link" in problems[0]
    capsys.readouterr()
    assert main(random_run) == 1
    err = _err_lines(capsys)
    assert any(line.startswith("repeval: error: random:") and "symbolic link" in line for line in err), err
    assert {p.name: p.read_bytes() for p in elsewhere.rglob("*.json")} == before


# 8 ------------------------------------------------------------------------------- careless inputs

def test_another_configuration_never_overwrites_records_without_rerun(tmp_path, tiny_run, capsys):
    args = tiny_run(models="random", protocols="knn")
    assert main(args) == 0
    before = read_records(tmp_path / "results")
    capsys.readouterr()
    assert main(args + ["--set", "knn.k=5,10"]) == 1
    err = capsys.readouterr().err
    assert "3 successful record(s)" in err and "--rerun random/knn replaces them" in err
    assert read_records(tmp_path / "results") == before
    assert main(args + ["--set", "knn.k=5,10", "--rerun", "random/knn"]) == 0      # asked for: replaced
    assert all("accuracy_k5" in r["metrics"] for r in read_records(tmp_path / "results").values())


def test_a_plugin_calling_sys_exit_is_an_error(tmp_path, tiny_run, capsys):
    quits = tmp_path / "quits.py"
    quits.write_text("import sys\nsys.exit(0)\n")
    assert main(["--plugin", str(quits), "list"]) == 2
    assert "called sys.exit(0)" in capsys.readouterr().err
    late = tmp_path / "late_exit.py"
    late.write_text("import sys\nfrom torch import nn\nfrom repeval import register_encoder\n"
                    "class E(nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n"
                    "register_encoder('late-exit', E)\n")
    assert main(["--plugin", str(late)] + tiny_run(models="late-exit")) == 2
    assert "sys.exit(0)" in capsys.readouterr().err


def test_a_model_named_twice_runs_once(tmp_path, tiny_run, capsys):
    assert main(tiny_run("--force", models="random,random", protocols="mlp,mlp")) == 0   # --force: twice before
    assert "3 records written" in capsys.readouterr().err


def test_implausible_labels_are_refused_at_load(tmp_path):
    x = np.zeros((20, 32, 32, 3), np.uint8)
    for name, y in (("huge", np.arange(20) % 2 * 10 ** 12), ("u64", (np.arange(20) % 2).astype(np.uint64) - 2)):
        (tmp_path / name).mkdir()
        for split in ("train", "test"):
            np.savez(tmp_path / name / f"{split}.npz", x=x, y=y)
        with pytest.raises(DataError, match="implausible") as e:
            load_npz(tmp_path / name)
        assert "negative" not in str(e.value) and "train.npz" in str(e.value)


def test_dry_run_with_train_only_computes_nothing(tmp_path, tiny_run, capsys):
    assert main(tiny_run("--train-only", "--dry-run", models="ae")) == 0
    assert "to compute" in capsys.readouterr().out
    assert not (tmp_path / "work" / "models").exists()


def test_records_in_place_are_still_valid_records():
    """The committed results obey every rule above: all found, none reported."""
    for ds in ("digits", "cifar10-jpeg"):
        layout_root = Path(__file__).resolve().parents[2] / "results"
        recs, problems = tables.load_records(layout_root, ds)
        assert recs and not problems and all(isinstance(Record.from_json(r), Record) for r in recs[:5])
