"""Run-time estimates and the overall progress line (repeval/engine/estimate.py, the runner's first pass):
the estimator's arithmetic from past timings and from the cost model, `repeval run --dry-run`'s
per-model and total estimates with and without timings in the results folder, and the overall line
in the log (not a terminal) with records done / to do, silenced by --quiet. No timed assertions."""
import json
import re

import pytest

from repeval.cli import main
from repeval.engine.estimate import (COST_MODEL, COST_PER_1K, TRAIN_PER_1K_EPOCH, Overall, Owed, Timings, Work,
                                     budget_ratio, cost_model, cost_table, describe, describe_total, estimate,
                                     fmt_seconds)
from repeval.store.progress import Progress

pytestmark = pytest.mark.usefixtures("restore_logging")

MLP = {"epochs": 10, "lr": 1e-3}


def rec(model, protocol, tap, seconds, *, config=MLP, version=1, epoch=1, train=0.0, extract=0.0, cached=False,
        success=True, device="cpu", max_train=0):
    return {"model": model, "protocol": protocol, "tap": tap, "epoch": epoch, "success": success,
            "config": {"protocol_version": version, "protocol_config": dict(config),
                       "encoder": {"train": {"max_train": max_train}}},
            "timing_s": {"protocol": seconds, "train": train, "extract": extract, "features_cached": cached},
            "provenance": {"machine": {"device": device}}}


def test_protocol_seconds_are_the_median_of_the_same_settings_else_scaled_by_budget():
    t = Timings.from_records([rec("a", "mlp", "y", 1.0), rec("b", "mlp", "y", 2.0), rec("c", "mlp", "y", 9.0),
                              rec("d", "mlp", "y", 100.0, config={"epochs": 5, "lr": 1e-3}),   # other settings
                              rec("e", "mlp", "y", 500.0, success=False),                     # failures: no
                              rec("f", "mlp", "y", 500.0, device="cuda:0")], where="res/x")   # other device: no
    assert t.n_records == 4
    same = estimate(Work("m", (Owed("mlp", "y", 1, MLP),) * 2), t)
    assert same.records == [2.0, 2.0] and same.protocols == 4.0 and same.sources == {"protocols": "records"}
    # 20 epochs: no record has them; every mlp/y record scaled by its budget ratio, then the median
    other = estimate(Work("m", (Owed("mlp", "y", 1, {"epochs": 20, "lr": 1e-3}),)), t)
    assert other.records == [pytest.approx((4.0 + 18.0) / 2)]                 # of 2, 4, 18, 400
    newer = estimate(Work("m", (Owed("mlp", "y", 2, MLP),)), t)        # a bumped version: scaled records too
    assert newer.records == [pytest.approx((2.0 + 9.0) / 2)]                  # of 1, 2, 9, 200
    assert budget_ratio({"epochs": 20, "steps": 10}, {"epochs": 10, "steps": 40}) == 0.5
    assert budget_ratio({"epochs": 20}, {"lr": 1}) == 1.0


def test_cost_model_scales_by_training_images_budget_and_cap():
    t = Timings()
    base = COST_PER_1K[("svm", "conv")]
    est = estimate(Work("m", (Owed("svm", "conv", 1, {"epochs": 10}),), n_train=2000), t)
    assert est.records == [pytest.approx(base * 2)] and est.sources == {"protocols": COST_MODEL}
    assert cost_model(Owed("svm", "conv", 1, {"epochs": 20}), 1000) == pytest.approx(base * 2)
    assert cost_model(Owed("recon", "y", 1, {"epochs": 2, "max_train": 500}), 4000) == pytest.approx(
        COST_PER_1K[("recon", "y")] / 2)
    unknown_tap = cost_model(Owed("knn", "layer4", 1, {}), 1000)          # the protocol's median over taps
    assert unknown_tap == pytest.approx(COST_PER_1K[("knn", "fc")])
    assert cost_model(Owed("plugin-proto", "y", 1, {}), 1000) > 0


def test_training_and_extraction_from_own_records_other_models_then_cost_model():
    recs = [rec("ae", "knn", "y", 1.0, epoch=1, train=20.0, extract=3.0),
            rec("ae", "knn", "y", 1.0, epoch=2, train=6.0, extract=0.1, cached=True),   # resumed, cached: not counted
            rec("vae", "knn", "y", 1.0, epoch=4, train=40.0, extract=5.0, max_train=500)]
    t = Timings.from_records(recs, where="res/d", n_train=1000)
    assert t.train_per_epoch == {"ae": 20.0, "vae": 10.0} and t.extract == {"ae": 3.0, "vae": 5.0}
    own = estimate(Work("ae", train_epochs=3, train_images=1000, extracts=2, images=1200), t)
    assert (own.train, own.extract) == (60.0, 6.0)
    assert own.sources == {"train": "records", "extract": "records"}
    # another model: the median seconds per image and epoch (ae 20/1000, vae 10/500) and median extraction
    new = estimate(Work("nat", train_epochs=2, train_images=100, extracts=1, images=1200), t)
    assert new.train == pytest.approx(0.02 * 100 * 2) and new.extract == 4.0
    assert new.sources == {"train": "other models' records", "extract": "other models' records"}
    bare = estimate(Work("nat", train_epochs=1, train_images=2000, extracts=1, images=1000), Timings())
    assert bare.sources == {"train": COST_MODEL, "extract": COST_MODEL} and bare.train > 0 and bare.extract > 0
    assert estimate(Work("x"), t).total == 0 and estimate(Work("x"), t).sources == {}


def test_describe_lines_name_their_sources():
    t = Timings.from_records([rec("a", "knn", "y", 4.0, extract=2.0)], where="res/digits")
    line = describe(estimate(Work("a", (Owed("knn", "y", 1, MLP),) * 3, extracts=1), t), t)
    assert line == "  estimated 14s (extract 2s, protocols 12s; from 1 records in res/digits)"
    mixed = estimate(Work("b", (Owed("knn", "y", 1, MLP),), train_epochs=1, train_images=1000, extracts=1), t)
    assert f"train {TRAIN_PER_1K_EPOCH:.0f}s [cost model]" in describe(mixed, t) and "protocols 4s [from 1 records in res/digits]" in describe(mixed, t)
    assert describe_total([mixed], t).startswith("estimated total: ") and "and the cost model" in describe_total([mixed], t)
    assert describe_total([], t) == "estimated total: 0s (nothing to compute)"
    assert [fmt_seconds(s) for s in (0.4, 59, 192, 3600 + 5 * 60 + 9)] == ["0s", "59s", "3m12s", "1h05m"]


def test_cost_table_regenerates_the_constants():
    recs = [rec("a", "svm", "y", 1.0), rec("b", "svm", "y", 3.0), rec("c", "svm", "y", 2.0)]
    assert cost_table(recs, n_train=2000) == {("svm", "y"): 1.0}


def test_overall_counts_records_and_corrects_its_eta_by_the_pace_so_far():
    now = [0.0]
    t = Timings.from_records([rec("a", "knn", "y", 10.0)], where="r")
    ests = {("a", 0): estimate(Work("a", (Owed("knn", "y", 1, MLP),) * 2), t),
            ("b", 0): estimate(Work("b", (Owed("knn", "y", 1, MLP),) * 2), t)}
    o = Overall(ests, Progress(quiet=True), quiet=True, clock=lambda: now[0])
    assert o.total_records == 4 and o.line() == "[overall] 0/4 records, 0s elapsed, ETA 40s"
    now[0] = 40.0                                   # twice as slow as estimated
    o.advance(("a", 0), "record")
    o.advance(("a", 0), "record")
    o.model_done(("a", 0))
    assert o.line() == "[overall] 2/4 records, 40s elapsed, ETA 40s"
    o.replan(("b", 0), estimate(Work("b", (Owed("knn", "y", 1, MLP),)), t))   # another process did one
    assert o.line() == "[overall] 2/3 records, 40s elapsed, ETA 20s"
    o.model_done(("b", 0))                          # given up (diverged): its work leaves the totals
    assert o.line() == "[overall] 2/2 records, 40s elapsed, ETA 0s"
    o.close()


@pytest.fixture
def timed_results(tmp_path, tiny_run, capsys):
    """A results folder with three knn records of `random`, their timings set to known values; the run
    that writes them logs the overall line (stderr is not a terminal)."""
    args = [a for a in tiny_run(models="random", protocols="knn") if a != "--quiet"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[overall] 3 records to compute over 1 model(s), estimated" in err
    assert re.search(r"\[overall\] 3/3 records, \d+s elapsed, ETA 0s", err)
    for path in (tmp_path / "results/digits/records/random/knn").glob("*.json"):
        r = json.loads(path.read_text())
        r["timing_s"].update(protocol=7.0, extract=30.0, features_cached=False)   # not checksummed
        path.write_text(json.dumps(r))
    return tmp_path / "results/digits"


def test_dry_run_estimates_from_the_results_folder(timed_results, tiny_run, capsys):
    assert main(tiny_run("--dry-run", "--rerun", "random", models="random,ae", protocols="knn")) == 0
    out = capsys.readouterr().out
    assert f"  estimated 51s (extract 30s, protocols 21s; from 3 records in {timed_results})" in out
    ae = out.split("[ae]")[1]
    assert "protocols 21s [from 3 records" in ae and "extract 30s [from other models' records" in ae
    assert "[cost model]" in ae                                   # training: no trained model in the folder
    assert re.search(rf"estimated total: \S+ for 6 records over 2 model\(s\) \(from 3 records in {timed_results} "
                     r"and the cost model\)", out)


def test_dry_run_estimates_from_the_cost_model_without_timings(tmp_path, tiny_run, capsys):
    assert main(tiny_run("--dry-run", models="random,ae", protocols="knn,mlp")) == 0
    out = capsys.readouterr().out
    assert out.count("; cost model)") == 2
    assert "estimated total: " in out and "for 12 records over 2 model(s) (cost model (no timings in the results folder))" in out


def test_quiet_silences_the_overall_line_but_the_log_file_keeps_it(timed_results, tiny_run, tmp_path, capsys):
    log = tmp_path / "run.log"
    assert main(tiny_run("--rerun", "random", "--log-file", str(log), models="random", protocols="knn")) == 0
    assert "[overall]" not in capsys.readouterr().err
    assert re.search(r"DEBUG \[overall\] 3/3 records", log.read_text())


def test_the_cost_model_is_what_the_committed_digits_records_measured():
    """COST_PER_1K is cost_table() of results/digits (the default run's records): regenerating those
    records without regenerating the constants fails here."""
    from pathlib import Path
    recs = [json.loads(p.read_text()) for p in (Path(__file__).resolve().parents[2] / "results" / "digits"
                                                  / "records").rglob("*.json")]
    assert len(recs) >= 400 and cost_table(recs, n_train=1437) == COST_PER_1K
