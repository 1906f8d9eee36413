"""Training seeds as an axis: records of several trained encoders of one model coexist, aggregate as
the mean over encoders with the spread over training seeds, and are compared on per-encoder means."""
import math

import numpy as np
import pytest

from repeval.cli import main
from repeval.config import ConfigError
from repeval.store.records import ResultsLayout, train_seed
from repeval.report.tables.build import SPREAD_PROBE, SPREAD_TRAIN, TABLE1, build_table, cell_stats
from repeval.report.tables.compare import pairwise, prediction_p
from repeval.report.tables.render import render_latex, render_markdown
from tests.helpers import read_records


def _rec(model: str, tap: str, seed: int, tseed: int, acc: float, epoch: int = 10) -> dict:
    return {"model": model, "display": model.upper(), "dataset": "d", "protocol": "mlp", "tap": tap,
            "seed": seed, "epoch": epoch, "success": True, "metrics": {"accuracy": acc},
            "config": {"encoder": {"kind": "trained", "train": {"seed": tseed}}}}


def _cells(**encoders) -> list[dict]:
    """model -> list of per-encoder lists of probe-seed accuracies, on the conv tap."""
    return [_rec(m, "conv", s, t, a) for m, encs in encoders.items() for t, accs in enumerate(encs)
            for s, a in enumerate(accs)]


def test_record_path_carries_the_training_seed():
    layout = ResultsLayout("results", "d")
    assert layout.record("ae", "mlp", "fc", 2, 10).name == "fc-seed2-epoch10.json"      # seed 0: unchanged
    assert layout.record("ae", "mlp", "fc", 2, 10, train_seed=1).name == "fc-train1-seed2-epoch10.json"
    assert train_seed({"encoder": {"train": {"seed": 3}}}) == 3
    assert train_seed({"encoder": {"kind": "frozen", "seed": 4}}) == 4                  # random init
    assert train_seed({"encoder": {"kind": "frozen"}}) == 0                             # a loaded checkpoint


def test_cell_is_mean_over_encoders_with_training_seed_spread():
    recs = _cells(ae=[[60.0, 62.0, 61.0], [70.0, 70.0, 70.0], [50.0, 52.0, 54.0]])
    mean, std, spread = cell_stats(recs, "accuracy")
    assert mean == pytest.approx(np.mean([61.0, 70.0, 52.0]))
    assert std == pytest.approx(np.std([61.0, 70.0, 52.0], ddof=1)) and spread == SPREAD_TRAIN
    one = _cells(ae=[[60.0, 62.0, 61.0]])
    assert cell_stats(one, "accuracy") == (pytest.approx(61.0), pytest.approx(1.0), SPREAD_PROBE)
    df = build_table(recs, TABLE1, "d", models=["ae"])
    row = df[df["column"] == "conv"].iloc[0]
    assert (row["encoders"], row["train_seeds"], row["n"], row["spread"]) == (3, "0 1 2", 9, SPREAD_TRAIN)
    md, tex = render_markdown(df, TABLE1, []), render_latex(df, TABLE1, [])
    assert "61.00 ± 9.00§ <sup>n=3×3</sup>" in md                    # 3 encoders x 3 probe seeds
    assert r"61.00 \pm 9.00^{\S,n=3\times 3}" in tex


def test_comparisons_use_per_encoder_means_and_say_which_spread():
    # Probe seeds alone would call this gap certain (spread 0.1); across training seeds it is noise.
    recs = _cells(ae=[[60.0, 60.1, 60.2], [64.0, 64.1, 64.2], [58.0, 58.1, 58.2]],
                  dim=[[62.0, 62.1, 62.2], [57.0, 57.1, 57.2], [65.0, 65.1, 65.2]])
    row = pairwise(recs, "d").query("column == 'conv'").iloc[0]
    assert row["spread"] == SPREAD_TRAIN and (row["n_a"], row["n_b"]) == (3, 3)
    assert row["p"] > 0.5 and not row["separated"]
    probe_only = pairwise(_cells(ae=[[60.0, 60.1, 60.2]], dim=[[62.0, 62.1, 62.2]]), "d").iloc[0]
    assert probe_only["spread"] == SPREAD_PROBE and probe_only["p"] < 1e-3
    mixed = pairwise(_cells(ae=[[60.0], [61.0], [62.0]], dim=[[70.0, 70.1, 70.2]]), "d").iloc[0]
    assert mixed["spread"] == f"{SPREAD_TRAIN} (ae)" and mixed["p"] == pytest.approx(prediction_p(
        np.array([60.0, 61.0, 62.0]), 70.1))


def test_prediction_p_reads_one_encoder_against_the_others_spread():
    a = np.array([60.0, 61.0, 62.0])
    assert prediction_p(a, 61.0) == pytest.approx(1.0)
    assert prediction_p(a, 75.0) < 0.05 < prediction_p(a, 63.0)
    assert math.isclose(prediction_p(np.array([5.0, 5.0]), 5.0), 1.0)


def test_two_training_seeds_coexist_in_a_run(tmp_path, tiny_run):
    assert main(tiny_run("--train-seeds", "0,1", protocols="knn")) == 0
    recs = read_records(tmp_path / "results")
    names = sorted(p.rsplit("/", 1)[1] for p in recs)
    assert names == sorted([f"{t}-seed0-epoch1.json" for t in ("conv", "fc", "y")]
                           + [f"{t}-train1-seed0-epoch1.json" for t in ("conv", "fc", "y")])
    by_seed = {train_seed(r["config"]): r for r in recs.values() if r["tap"] == "fc"}
    assert by_seed[0]["encoder_hash"] != by_seed[1]["encoder_hash"]       # two different encoders
    assert main(tiny_run("--train-seeds", "0,1", protocols="knn")) == 0    # both found present
    assert read_records(tmp_path / "results") == recs


def test_bad_train_seeds_fail_in_one_line(tmp_path, tiny_run, capsys):
    assert main(tiny_run("--train-seeds", "0,0")) != 0
    assert "--train-seeds must be distinct" in capsys.readouterr().err
    assert main(tiny_run("--train-seeds", "a")) != 0
    assert "--train-seeds expects comma-separated integers" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from repeval.cli import _int_list
        _int_list("1,x", "--train-seeds")


def test_curve_preset_names_the_whole_zoo():
    from repeval.engine.presets import CURVE_MODELS
    from repeval.registry import MODELS
    builtin = {n for n in MODELS.names() if MODELS.get(n).source == "repeval"}
    assert set(CURVE_MODELS) == builtin and len(CURVE_MODELS) == len(builtin) == 13
