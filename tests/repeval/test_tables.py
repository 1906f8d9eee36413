"""`repeval table` (repeval/report/tables/): Tables 1 and 4 from fixture records (made here), beside the shipped
paper numbers; Table X and the learning curves. (The paper's numbers themselves: tests/repeval/test_paper.py.)

Snapshots of the Markdown and LaTeX live in tests/repeval/snapshots/; regenerate them after an intended
change with ``REPEVAL_UPDATE_SNAPSHOTS=1 python -m pytest tests/repeval/test_tables.py`` and review the diff.
"""
from __future__ import annotations

import difflib
import io
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from repeval.report import tables
from repeval.cli import main
from repeval.config import config_hash
from repeval.store.records import Record, ResultsLayout, metrics_checksum, train_seed
from repeval.registry import MODELS, PROTOCOLS
from repeval.store.storage import atomic_write_json

SNAPSHOTS = Path(__file__).parent / "snapshots"
DS = "cifar10-jpeg"
TRAIN = {"batch_size": 64, "beta1": 0.5, "beta2": 0.999, "lr": 0.0001, "max_train": 0, "precision": "fp32",
         "seed": 0}
FAMILY = {"dim-l-infonce": {"estimator": "infonce", "alpha": 0.0, "beta": 1.0, "gamma": 0.1, "gp_weight": 1.0,
                            "critic_units": 256}, "vae": {"beta": 1.0}, "beta-vae": {"beta": 4.0}}
PROTO = {"mlp": {"epochs": 20, "milestones": [10, 15]}, "svm": {"epochs": 10, "c_grid": [0.01, 0.1, 1.0]},
         "knn": {"k": [20, 200], "temperature": 0.07}, "linear": {"max_iter": 200},
         "recon": {"epochs": 8, "ssim": "released-code SSIM (11x11 window, sigma 11)"},
         "mine": {"steps": 300, "batch_size": 256}, "ndm": {"steps": 300, "batch_size": 512}}
PROV = {"versions": {"python": "3.11.7", "repeval": "0.1.0", "torch": "2.14.1"},
        "git_commit": "0123456789abcdef0123456789abcdef01234567", "machine": {"device": "cpu"}}
NOTES = {DS: "cifar10-jpeg: a JPEG-derived copy of CIFAR-10 (quality 75), not the original pixels",
         "cifar100": "torchvision CIFAR100 files", "digits": "sklearn digits"}
UNTRAINED = {"random", "myenc"}


def record_path(results: Path, dataset: str, model: str, protocol: str, tap: str, seed: int, epoch: int = 4,
                train_seed: int = 0) -> Path:
    return ResultsLayout(results, dataset).record(model, protocol, tap, seed, epoch, train_seed=train_seed)

# (model, display) -> protocol -> tap -> list of metric values (one per seed; None = a failed seed)
FIXTURE = {
    DS: {
        ("ae", "AE"): {"mlp": {"conv": [60.0], "fc": [55.5], "y": [50.25]},
                       "svm": {"conv": [50, 51, 52, 53, 54], "fc": [40, 41, 42, 43, 44], "y": [30, 30, 30, 30, 30]},
                       "recon": {"y": [0.61]}, "mine": {"y": [80.0]}, "ndm": {"y": [0.05]}},
        ("beta-vae", "β-VAE"): {"mlp": {"conv": [58.0], "fc": [57.0]}},           # no y: an em dash
        ("vae", "VAE"): {"svm": {"conv": [45, 46, 47, 48, 49]}},
        ("dim-l-infonce", "DIM(L) (infoNCE)"): {
            "mlp": {"conv": [69.0, 70.0, 71.0], "fc": [72.0], "y": [65.0]},       # 3 seeds: superscript
            "svm": {"conv": [60, 61, 62, 63, None], "fc": [50, 50, 50, 50, 50], "y": [45, 46, 45, 46, 45]},
            "recon": {"y": [0.40]}, "mine": {"y": [40.0]}, "ndm": {"y": [8.5]}},
        ("random", "Random init"): {"mlp": {"conv": [40.0], "fc": [35.0], "y": [20.0]}},
        ("myenc", "My encoder"): {"mlp": {"conv": [50.0], "fc": [45.0], "y": [30.0]}},
    },
    "cifar100": {
        ("ae", "AE"): {"mlp": {"conv": [30.0], "fc": [25.0], "y": [20.0]}},
        ("dim-l-infonce", "DIM(L) (infoNCE)"): {"mlp": {"conv": [45.0], "fc": [44.0], "y": [40.0]}},
    },
}
METRIC = {"mlp": "accuracy", "svm": "accuracy", "recon": "ssim", "mine": "mi", "ndm": "ndm", "linear": "accuracy"}


def _metrics(model, protocol, value) -> dict:
    if value is None:
        return {}
    if protocol == "recon" and model == "ae":      # only AE's recon reports a true MS-SSIM
        return {"ssim": value, "ms_ssim": round(value - 0.1, 6), "ssim_released": round(value + 0.05, 6)}
    if protocol == "recon":
        return {"ssim": value, "ssim_released": round(value + 0.05, 6)}
    if protocol == "ndm":                            # the paper's scale (raw codes) beside the z-scored one
        return {"ndm": value, "ndm_raw": round(value / 2, 6)}
    return {METRIC[protocol]: value}


def make_record(dataset, model, display, protocol, tap, seed, value, epoch: int = 4) -> dict:
    ok = value is not None
    epoch = 0 if model in UNTRAINED else epoch
    encoder = ({"kind": "frozen", "weights": "w"} if model in UNTRAINED else
               {"kind": "trained", "train": TRAIN, "config": FAMILY.get(model, {})})
    if model in MODELS:   # the code's versions: these records are current (not stale, see test_stale.py)
        encoder["version"] = MODELS.get(model).build.family.version
    config = {"model": model, "dataset": dataset, "encoder": encoder, "epoch": epoch, "protocol": protocol,
              "protocol_version": PROTOCOLS.get(protocol).version, "protocol_config": PROTO[protocol], "tap": tap,
              "seed": seed}
    return Record(model=model, display=display, dataset=dataset, dataset_note=NOTES[dataset], protocol=protocol,
                  tap=tap, seed=seed, epoch=epoch, success=ok, preset="quick",
                  error=None if ok else "ProtocolFailure: svm loss became nan at epoch 3",
                  metrics=_metrics(model, protocol, value), config=config, config_hash=config_hash(config),
                  encoder_hash="e", timing_s={"protocol": 1.0}, provenance=PROV,
                  created="2026-01-01T00:00:00+0000").to_json()


def write_fixture(results: Path, datasets=(DS, "cifar100")) -> Path:
    for ds in datasets:
        for (model, display), protos in FIXTURE[ds].items():
            for protocol, taps in protos.items():
                for tap, values in taps.items():
                    for seed, v in enumerate(values):
                        _write(results, make_record(ds, model, display, protocol, tap, seed, v))
    return results


@pytest.fixture
def results(tmp_path) -> Path:
    return write_fixture(tmp_path / "results")


def _records(results, ds=DS):
    recs, problems = tables.load_records(results, ds)
    assert not problems
    return recs


def _cell(df, display, column):
    row = df[(df["display"] == display) & (df["column"] == column)]
    assert len(row) == 1, (display, column)
    return row.iloc[0]


def _md_row(md: str, label: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} "))
    return [c.strip() for c in line.strip("|").split("|")]


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("REPEVAL_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing snapshot {path}: run with REPEVAL_UPDATE_SNAPSHOTS=1"
    want = path.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "snapshot", "now", n=1))
    assert text == want, f"{name} differs from its snapshot (regenerate: see module doc):\n{diff[:4000]}"


# ---------------------------------------------------------------------------------------------- cells

def test_mean_std_seed_counts_and_failures(results):
    df = tables.build_table(_records(results), tables.TABLE4, DS)
    ae = _cell(df, "AE", "svm_conv")
    assert (ae["mean"], ae["n"], ae["seeds"]) == (52.0, 5, "0 1 2 3 4")
    assert ae["std"] == pytest.approx(math.sqrt(2.5))             # sample std of 50..54
    dim = _cell(df, "DIM(L) (infoNCE)", "svm_conv")                 # seed 4 failed: excluded, counted
    assert (dim["mean"], dim["n"], dim["n_failed"]) == (61.5, 4, 1)
    md = tables.render_markdown(df, tables.TABLE4, tables.footnotes(df, _records(results), tables.TABLE4))
    assert _md_row(md, "AE")[1] == "52.00 ± 1.58"
    assert _md_row(md, "DIM(L) (infoNCE)")[1] == "61.50 ± 1.29 <sup>n=4</sup>"
    assert "n = 5 seeds per cell (SVM conv, SVM fc, SVM y)" in md
    assert "n = 1 seed per cell (SSIM (released code), SSIM (standard), MS-SSIM, MINE (nats), NDM (raw codes), " \
           "NDM (z-scored))" in md
    assert "Failed runs excluded (1): DIM(L) (infoNCE)/svm/conv/seed4: ProtocolFailure" in md


def test_missing_cells_are_em_dashes_never_zero(results):
    recs = _records(results)
    df = tables.build_table(recs, tables.TABLE1, DS)
    assert math.isnan(_cell(df, "β-VAE", "y")["mean"]) and _cell(df, "β-VAE", "y")["n"] == 0
    md = tables.render_markdown(df, tables.TABLE1, [])
    beta = _md_row(md, "β-VAE")      # conv ours/paper/Δ, fc ours/paper/Δ, y ours/paper/Δ
    assert beta[7:10] == ["—", "55.43", "—"]
    nat = _md_row(md, "NAT")         # a paper row we have no record for
    assert nat[1:4] == ["—", "56.19", "—"]
    sup = _md_row(md, "Fully supervised")
    assert sup[1:4] == ["—", "—", "—"] and sup[5] == "75.39"
    csv = pd.read_csv(io.StringIO(tables.render_csv(df)))
    row = csv[(csv["display"] == "β-VAE") & (csv["column"] == "y")].iloc[0]
    assert pd.isna(row["mean"]) and row["paper"] == 55.43 and pd.isna(row["delta"])
    assert "---" in tables.render_latex(df, tables.TABLE1, [])
    # ms_ssim: no paper counterpart, a value for AE only; DIM's recon record lacks it (not a failure)
    t4 = tables.build_table(recs, tables.TABLE4, DS)
    ms = t4[t4["column"] == "ms_ssim"].set_index("display")
    assert ms["paper"].isna().all() and ms.loc["AE", "mean"] == pytest.approx(0.51)
    assert (ms.loc["DIM(L) (infoNCE)", "n"], ms.loc["DIM(L) (infoNCE)", "n_failed"]) == (0, 0)
    md4 = tables.render_markdown(t4, tables.TABLE4, [])
    assert "MS-SSIM paper" not in md4 and _md_row(md4, "DIM(L) (infoNCE)")[14] == "—"


def test_rows_in_paper_order_then_extras(results):
    df = tables.build_table(_records(results), tables.TABLE1, DS)
    order = list(dict.fromkeys(df.sort_values("row")["display"]))
    assert order == ["Fully supervised", "VAE", "AE", "β-VAE", "AAE", "BiGAN", "NAT", "DIM(G)", "DIM(L) (DV)",
                     "DIM(L) (JSD)", "DIM(L) (infoNCE)", "Random init", "My encoder"]
    user = df[df["display"] == "My encoder"]
    assert user["paper"].isna().all() and (user["mean"] == [50.0, 45.0, 30.0]).all()
    t4 = tables.build_table(_records(results), tables.TABLE4, DS)
    assert list(dict.fromkeys(t4.sort_values("row")["display"])) == [
        "VAE", "AAE", "BiGAN", "NAT", "DIM(G)", "DIM(L+G)", "DIM(L) (infoNCE)", "AE"]
    # restricted to the models of a run: no paper-only rows
    only = tables.build_table(_records(results), tables.TABLE1, DS, models=["ae", "myenc"])
    assert list(dict.fromkeys(only["display"])) == ["AE", "My encoder"]


def test_paper_delta(results):
    df = tables.build_table(_records(results), tables.TABLE1, DS)
    ae = _cell(df, "AE", "conv")
    assert ae["paper"] == 62.19 and ae["delta"] == pytest.approx(60.0 - 62.19)
    md = tables.render_markdown(df, tables.TABLE1, [])
    assert _md_row(md, "AE")[1:4] == ["60.00", "62.19", "-2.19"]
    t4 = tables.build_table(_records(results), tables.TABLE4, DS)
    svm = _cell(t4, "VAE", "svm_conv")
    assert (svm["paper"], svm["paper_std"], svm["delta"]) == (53.83, 0.62, pytest.approx(47 - 53.83))


def test_table4_reads_each_column_on_the_papers_scale(results):
    """SSIM: Δ on the released code's SSIM, the standard SSIM beside it without a paper number; NDM: Δ on
    the raw codes, the z-scored value beside it; MINE: the paper's number, no Δ, and a footnote why."""
    recs = _records(results)
    t4 = tables.build_table(recs, tables.TABLE4, DS)
    rel = _cell(t4, "DIM(L) (infoNCE)", "ssim_released")           # 0.40 + 0.05 vs the paper's "MS-SSIM" 0.37
    assert (rel["metric"], rel["paper"], rel["delta"]) == ("ssim_released", 0.37, pytest.approx(0.08))
    std = _cell(t4, "DIM(L) (infoNCE)", "ssim")
    assert std["mean"] == pytest.approx(0.40) and math.isnan(std["paper"]) and math.isnan(std["delta"])
    raw = _cell(t4, "DIM(L) (infoNCE)", "ndm_raw")                 # 8.5 / 2 vs the paper's 9.18
    assert (raw["metric"], raw["paper"], raw["delta"]) == ("ndm_raw", 9.18, pytest.approx(4.25 - 9.18))
    z = _cell(t4, "DIM(L) (infoNCE)", "ndm")
    assert z["mean"] == 8.5 and math.isnan(z["paper"])
    mine = _cell(t4, "DIM(L) (infoNCE)", "mine")
    assert mine["paper"] == 45.09 and math.isnan(mine["delta"]) and mine["mean"] == 40.0
    md = tables.render_markdown(t4, tables.TABLE4, tables.footnotes(t4, recs, tables.TABLE4))
    head = _md_row(md, "Model")
    assert "MINE (nats) paper" in head and "MINE (nats) Δ" not in head
    assert head.index("NDM (z-scored)") == head.index("NDM (raw codes) Δ") + 1
    assert head.index("SSIM (standard)") == head.index("SSIM (released code) Δ") + 1
    assert "MINE (nats): no Δ. The paper's values (6.04–101.65) are on a scale it does not state" in md
    assert "metric `ssim_released`" in md and "metric `ndm_raw` (nats)" in md
    tex = tables.render_latex(t4, tables.TABLE4, [])
    assert r"\multicolumn{2}{c}{MINE (nats)}" in tex
    # the ranking against the paper: on the paper's scales
    rank = tables.rank_agreement(t4).set_index("column")
    assert {"ssim_released", "ndm_raw", "mine"} <= set(rank.index)
    assert rank.loc["ssim", "note"] == "undefined: the paper has no numbers in this column"


def test_degenerate_cells_leave_tau_and_the_significance_counts(results):
    from repeval.report.tables.compare import format_comparisons, pairwise
    for seed, v in enumerate([40, 41, 42, 43, 44]):                  # VAE's SVM y: 5 seeds, degenerate
        rec = make_record(DS, "vae", "VAE", "svm", "y", seed, v)
        rec["metrics"].update(degenerate=1.0)
        _write(results, rec)
    for seed, v in enumerate([30, 31, 30, 31, 30]):                  # BiGAN's SVM y: not degenerate
        _write(results, make_record(DS, "bigan", "BiGAN", "svm", "y", seed, v))
    recs = _records(results)
    t4 = tables.build_table(recs, tables.TABLE4, DS)
    rank = tables.rank_agreement(t4).set_index("column")
    # svm_y in both: VAE (degenerate, out), BiGAN, DIM(L) infoNCE: two ranked
    assert rank.loc["svm_y", "n_common"] == 2 and rank.loc["svm_y", "degenerate_excluded"] == "VAE"
    assert "VAE" not in rank.loc["svm_y", "models"]
    assert "‡ not ranked: VAE" in tables.render_markdown(t4, tables.TABLE4, [], tables.rank_agreement(t4))
    df = pairwise(recs, DS)
    deg = df[df["degenerate"]]
    assert set(deg["column"]) == {"svm_y"} and set(deg["model_a"]) | set(deg["model_b"]) >= {"vae"}
    assert deg["p_holm"].isna().all() and not deg["significant"].any() and deg["p"].notna().all()
    counted = df[~df["degenerate"]]
    assert counted["p_holm"].min() == pytest.approx(min(1.0, len(counted) * counted["p"].min()))
    lines = format_comparisons(df)
    assert lines[0].startswith(f"{len(counted)} pairwise comparisons")
    assert f"{len(deg)} further comparisons involve a degenerate cell" in lines[1]


def test_console_tables_carry_a_flag_legend(results, capsys):
    rec = make_record(DS, "ae", "AE", "svm", "y", 0, 30)
    rec["metrics"].update(degenerate=True, converged=False)
    _write(results, rec)
    assert main(["table", "--results", str(results), "--dataset", DS, "--no-plots", "--format", "md"]) == 0
    out = capsys.readouterr().out
    t4 = out.split("## Table 4")[1].split("## Table")[0]
    assert "Legend: † not converged" in t4 and "‡ degenerate" in t4 and "no Δ where the paper's scale differs" in t4
    tables.print_tables(results, DS, ["ae"])
    assert "Legend: † not converged" in capsys.readouterr().out


def test_rank_agreement_hand_checked(results):
    df = tables.build_table(_records(results), tables.TABLE1, DS)
    rank = tables.rank_agreement(df).set_index("column")
    # conv, models in both: AE (ours 60, paper 62.19), β-VAE (58, 62.4), DIM(L) infoNCE (70, 75.21).
    # Pairs: AE/β-VAE ours 60 > 58 but paper 62.19 < 62.4: discordant; AE/infoNCE concordant;
    # β-VAE/infoNCE concordant. No ties: tau = (2 - 1) / 3 = 1/3.
    assert rank.loc["conv", "n_common"] == 3
    assert rank.loc["conv", "tau"] == pytest.approx(1 / 3)
    # y: AE (50.25, 54.47) and infoNCE (65, 69.13) only (β-VAE has no y): one concordant pair -> 1
    assert (rank.loc["y", "n_common"], rank.loc["y", "tau"]) == (2, pytest.approx(1.0))
    t4 = tables.rank_agreement(tables.build_table(_records(results), tables.TABLE4, DS)).set_index("column")
    assert t4.loc["svm_fc", "n_common"] == 1 and math.isnan(t4.loc["svm_fc", "tau"])
    assert "undefined: 1 model(s)" in t4.loc["svm_fc", "note"]
    assert t4.loc["svm_conv", "tau"] == pytest.approx(1.0)          # VAE 47 < infoNCE 61.5; 53.83 < 63.25


def test_rank_undefined_without_paper_numbers(tmp_path):
    res = tmp_path / "r"
    for m, d, v in (("ae", "AE", 90.0), ("random", "Random init", 80.0)):
        _write(res, make_record("digits", m, d, "mlp", "conv", 0, v))
    df = tables.build_table(_records(res, "digits"), tables.TABLE1, "digits")
    rank = tables.rank_agreement(df)
    assert rank["tau"].isna().all() and rank["note"].str.contains("no numbers for digits").all()
    assert "paper" not in tables.render_markdown(df, tables.TABLE1, []).split("Notes:")[0]
    # columns with neither a record nor a paper number are dropped: only SVM conv here
    _write(res, make_record("digits", "ae", "AE", "svm", "conv", 0, 70.0))
    t4 = tables.build_table(_records(res, "digits"), tables.TABLE4, "digits")
    assert list(t4["column"]) == ["svm_conv"] and list(t4["display"]) == ["AE"]


# ---------------------------------------------------------------------------------------------- rendering

def test_snapshots(results):
    recs = _records(results)
    for spec in (tables.TABLE1, tables.TABLE4):
        df = tables.build_table(recs, spec, DS)
        notes = tables.footnotes(df, recs, spec)
        check_snapshot(f"{spec.name}_{DS}.md", tables.render_markdown(df, spec, notes, tables.rank_agreement(df)))
        check_snapshot(f"{spec.name}_{DS}.tex", tables.render_latex(df, spec, notes))
    both = pd.concat([tables.build_table(_records(results, ds), tables.TABLE1, ds) for ds in (DS, "cifar100")],
                     ignore_index=True)
    notes = tables.footnotes(both, recs + _records(results, "cifar100"), tables.TABLE1)
    check_snapshot("table1_combined.md", tables.render_markdown(both, tables.TABLE1, notes))
    check_snapshot("table1_combined.tex", tables.render_latex(both, tables.TABLE1, notes))


def test_footnotes_state_data_budget_protocols_provenance(results):
    recs = _records(results)
    df = tables.build_table(recs, tables.TABLE4, DS)
    text = "\n".join(tables.footnotes(df, recs, tables.TABLE4))
    for needle in ("JPEG-derived copy", "paper's CIFAR-10 numbers", "camera-ready", "review version",
                   "single-scale SSIM", "DIM(L) (infoNCE), the paper's default", "preset quick",
                   "critic_units=256", "precision=fp32", "c_grid=(0.01, 0.1, 1.0)", "sigma 11",
                   "commit 0123456789ab", "torch 2.14.1"):
        assert needle in text, needle


def test_tex_escape():
    assert tables.tex_escape("β-VAE 50% a_b #1 ± `x_y` — ü") == \
        r"$\beta$-VAE 50\% a\_b \#1 $\pm$ \texttt{x\_y} --- u"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(results, tmp_path):
    recs = _records(results)
    body = []
    for spec in (tables.TABLE1, tables.TABLE4):
        df = tables.build_table(recs, spec, DS)
        (tmp_path / f"{spec.name}.tex").write_text(tables.render_latex(df, spec, tables.footnotes(df, recs, spec)))
        body.append(rf"\input{{{spec.name}.tex}}")
    both = pd.concat([tables.build_table(_records(results, ds), tables.TABLE1, ds) for ds in (DS, "cifar100")],
                     ignore_index=True)
    (tmp_path / "combined.tex").write_text(tables.render_latex(both, tables.TABLE1, ["β-VAE & 50% — `a_b`"]))
    body.append(r"\input{combined.tex}")
    doc = "\\documentclass{article}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\usepackage{booktabs}\n" \
          "\\begin{document}\n" + "\n".join(body) + "\n\\end{document}\n"
    (tmp_path / "doc.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_writes_tables_plots_and_rank(results, tmp_path, capsys):
    import matplotlib.pyplot as plt
    import numpy as np

    (results / DS / "recon").mkdir(parents=True)
    plt.imsave(results / DS / "recon" / "ae.png", np.zeros((8, 16, 3)))
    assert main(["table", "--results", str(results), "--dataset", DS]) == 0
    out = results / DS
    for name in ("table1.md", "table1.tex", "table1.csv", "table4.md", "table4.tex", "table4.csv",
                 "rank_agreement.csv", "timing.csv", "table1.png", "table4.png", "recon_grids.png"):
        assert (out / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "cifar10-jpeg table1 conv: tau = +0.333 over 3 models" in printed
    csv = pd.read_csv(out / "table1.csv")
    assert set(tables.CSV_COLUMNS) <= set(csv.columns)
    rank = pd.read_csv(out / "rank_agreement.csv")
    assert set(rank["table"]) == {"table1", "table4"}
    assert not list(out.glob(".*.tmp"))                              # atomic writes leave no temp files

    # all datasets, --out, md only, no plots: one folder per dataset plus the combined Table 1
    dest = tmp_path / "out"
    assert main(["table", "--results", str(results), "--format", "md", "--out", str(dest), "--no-plots"]) == 0
    assert (dest / DS / "table1.md").exists() and (dest / "cifar100" / "table1.md").exists()
    assert not (dest / "cifar100" / "table4.md").exists()            # no Table 4 records there
    combined = (dest / "table1.md").read_text()
    assert "CIFAR-100 conv paper" in combined and not list(dest.rglob("*.png"))


def test_cli_errors(results, capsys):
    assert main(["table", "--results", str(results), "--dataset", "nope", "--no-plots"]) == 2
    assert "no records for dataset 'nope'" in capsys.readouterr().err
    assert main(["table", "--results", str(results), "--format", "md,pdf", "--no-plots"]) == 2


def test_run_summary_prints_tables(results, capsys):
    from repeval.report.tables import print_tables
    print_tables(results, DS, ["ae", "dim-l-infonce"])
    out = capsys.readouterr().out
    assert "Table 1" in out and "Table 4" in out and "| AE " in out and "NAT" not in out


def test_timing_table_accounts_train_extract_and_protocol_seconds():
    def rec(model, protocol, train, extract, proto, seed=0, epoch=10):
        return {"model": model, "display": model.upper(), "protocol": protocol, "epoch": epoch,
                "config": {"encoder": {"train": {"seed": seed}}},
                "timing_s": {"train": train, "extract": extract, "protocol": proto}}
    recs = [rec("ae", "mlp", 100.0, 30.0, 5.0), rec("ae", "mlp", 0.0, 1.0, 7.0),   # resumed: cached stages
            rec("ae", "svm", 0.0, 1.0, 2.5), rec("ae", "boom", 0.0, 1.0, 1.0), rec("random", "ndm", 0.0, 20.0, 4.0)]
    t = tables.timing_table(recs).set_index("model")
    assert list(t.index) == ["ae", "random", "TOTAL"]          # paper rows first (AE), then extra rows
    ae = t.loc["ae"]
    assert (ae.train_s, ae.extract_s, ae.mlp_s, ae.svm_s, ae.other_s, ae.records, ae.encoders) == \
        (100.0, 30.0, 12.0, 2.5, 1.0, 4, 1)
    assert ae.total_s == 100 + 30 + 12 + 2.5 + 1
    assert t.loc["TOTAL", "total_s"] == ae.total_s + 24.0 and t.loc["TOTAL", "records"] == 5

    # a second trained encoder of the row (training seed 1) adds its own training and extraction
    t = tables.timing_table(recs + [rec("ae", "mlp", 80.0, 10.0, 3.0, seed=1),
                                    rec("ae", "knn", 80.0, 12.0, 1.0, seed=1)]).set_index("model")
    ae = t.loc["ae"]
    assert (ae.train_s, ae.extract_s, ae.mlp_s, ae.records, ae.encoders) == (180.0, 42.0, 15.0, 6, 2)
    assert t.loc["TOTAL", "encoders"] == 3

    # a curve: each evaluated epoch's records carry the training stretch that ended there
    t = tables.timing_table(recs + [rec("ae", "mlp", 40.0, 5.0, 1.0, epoch=1), rec("ae", "knn", 40.0, 5.0, 1.0, epoch=1),
                                    rec("ae", "mlp", 70.0, 6.0, 1.0, epoch=3)]).set_index("model")
    ae = t.loc["ae"]
    assert (ae.train_s, ae.extract_s, ae.records, ae.encoders) == (100.0 + 40 + 70, 30.0 + 5 + 6, 7, 1)


def test_floor_is_the_random_init_cell_of_the_same_column(results):
    df = tables.build_table(_records(results), tables.TABLE1, DS).set_index(["model", "column"])
    assert df.loc[("ae", "conv"), "floor"] == 40.0 and df.loc[("ae", "conv"), "delta_floor"] == 20.0
    assert df.loc[("dim-l-infonce", "conv"), "delta_floor"] == 30.0        # mean of three seeds, 70
    assert math.isnan(df.loc[("beta-vae", "y"), "delta_floor"])          # missing cell: no difference
    lines = tables.format_floor(tables.build_table(_records(results), tables.TABLE1, DS))
    conv = next(line for line in lines if " conv:" in line)
    assert "random init 40.00; 4/4 above; DIM(L) (infoNCE) +30.00, AE +20.00" in conv, conv
    t4 = tables.build_table(_records(results), tables.TABLE4, DS)
    assert t4["floor"].isna().all() and tables.format_floor(t4) == []     # no random-init Table 4 records


# ---------------------------------------------------------------------------------------------- reporting
# declared by the protocols: flags, epochs, Table X, learning curves, a protocol added in a test

def _write(results: Path, rec: dict) -> None:
    """Write a fixture record edited after make_record, re-sealed (identity hash, metrics checksum), at the path
    of its training seed."""
    rec["config"]["epoch"] = rec["epoch"]
    rec["config_hash"] = config_hash(rec["config"])
    rec["metrics_sha256"] = metrics_checksum(rec["metrics"])
    atomic_write_json(record_path(results, rec["dataset"], rec["model"], rec["protocol"], rec["tap"], rec["seed"],
                                  rec["epoch"], train_seed(rec["config"])), rec)


def test_flags_mark_unconverged_and_degenerate_cells(results):
    # the probe helper's records: a bool in metrics arrives as 0.0 / 1.0 through the runner
    for seed, conv in ((0, 1.0), (1, 0.0), (2, 1.0)):
        rec = make_record(DS, "dim-l-infonce", "DIM(L) (infoNCE)", "mlp", "conv", seed, 69.0 + seed)
        rec["metrics"]["converged"] = conv
        _write(results, rec)
    rec = make_record(DS, "ae", "AE", "svm", "y", 0, 30)
    rec["metrics"].update(degenerate=True, converged=True)
    _write(results, rec)
    recs = _records(results)
    t1, t4 = tables.build_table(recs, tables.TABLE1, DS), tables.build_table(recs, tables.TABLE4, DS)
    assert _cell(t1, "DIM(L) (infoNCE)", "conv")["not_converged"] and not _cell(t1, "AE", "conv")["not_converged"]
    assert _cell(t4, "AE", "svm_y")["degenerate"] and not _cell(t4, "AE", "svm_y")["not_converged"]
    md1 = tables.render_markdown(t1, tables.TABLE1, tables.footnotes(t1, recs, tables.TABLE1))
    assert _md_row(md1, "DIM(L) (infoNCE)")[1] == "70.00 ± 1.00† <sup>n=3</sup>" and _md_row(md1, "AE")[1] == "60.00"
    assert "Flags: † = not converged" in md1 and "(1 cell)" in md1 and "‡" not in md1
    md4 = tables.render_markdown(t4, tables.TABLE4, tables.footnotes(t4, recs, tables.TABLE4))
    assert _md_row(md4, "AE")[7] == "30.00 ± 0.00‡" and "‡ = degenerate solution" in md4
    tex = tables.render_latex(t4, tables.TABLE4, tables.footnotes(t4, recs, tables.TABLE4))
    assert r"$30.00 \pm 0.00^{\ddagger}$" in tex and r"$61.50 \pm 1.29^{n=4}$" in tex
    csv = pd.read_csv(io.StringIO(tables.render_csv(t4)))
    flagged = csv[csv["degenerate"]]
    assert list(zip(flagged["model"], flagged["column"])) == [("ae", "svm_y")] and csv["degenerate"].dtype == bool


def test_a_record_of_two_fits_flags_each_column_by_its_own_fit(results):
    """NDM fits two critics in one record (z-scored and raw codes): each column reads its own
    ``<metric>_converged``, not the other's."""
    rec = make_record(DS, "ae", "AE", "ndm", "y", 0, 0.05)
    rec["metrics"].update(ndm_converged=0.0, ndm_raw_converged=1.0)
    _write(results, rec)
    t4 = tables.build_table(_records(results), tables.TABLE4, DS)
    cols = {c: bool(_cell(t4, "AE", c)["not_converged"]) for c in t4.loc[t4["protocol"] == "ndm", "column"].unique()}
    assert cols == {"ndm": True, "ndm_raw": False}, cols


def _epoch_record(model, display, tap, seed, value, epoch, protocol="mlp", **metrics):
    rec = make_record(DS, model, display, protocol, tap, seed, value)
    rec["epoch"] = epoch
    rec["metrics"].update(metrics)
    return rec


def _write_curve(results: Path) -> None:
    """AE and DIM(L) infoNCE at epochs 1, 3, 6 (2 probe seeds; kNN at 3 and 6), random at 0."""
    for model, display, base, slope in (("ae", "AE", 58.0, 0.5), ("dim-l-infonce", "DIM(L) (infoNCE)", 56.0, 1.5)):
        for epoch in (1, 3, 6):
            for seed in (0, 1):
                for tap in ("conv", "y"):
                    rec = _epoch_record(model, display, tap, seed, base + slope * epoch + seed, epoch)
                    _write(results, rec)
            if epoch > 1:
                rec = _epoch_record(model, display, "y", 0, None, epoch, "knn")
                rec.update(success=True, error=None,
                           metrics={"accuracy_k20": base + epoch, "accuracy_k200": base + epoch - 1})
                _write(results, rec)
        svm = _epoch_record(model, display, "conv", 0, 50.0 + epoch, 6, "svm")
        _write(results, svm)
    for seed in (0, 1):
        _write(results, _epoch_record("random", "Random init", "conv", seed, 50.0 + seed, 0))


def test_tables_at_a_chosen_epoch_default_last(tmp_path, capsys):
    res = tmp_path / "r"
    _write_curve(res)
    recs = _records(res)
    last = tables.build_table(recs, tables.TABLE1, DS)
    assert _cell(last, "AE", "conv")["mean"] == 58.0 + 3.0 + 0.5 and _cell(last, "AE", "conv")["epoch"] == "6"
    assert _cell(last, "Random init", "conv")["mean"] == 50.5                   # untrained: always epoch 0
    at3 = tables.build_table(recs, tables.TABLE1, DS, epoch=3)
    assert _cell(at3, "DIM(L) (infoNCE)", "y")["mean"] == 56.0 + 4.5 + 0.5
    assert _cell(at3, "Random init", "conv")["n"] == 2
    notes = "\n".join(tables.footnotes(at3, recs, tables.TABLE1, epoch=3))
    assert "Encoder training epoch (--epoch 3; untrained encoders at 0): 3 [AE, DIM(L) (infoNCE)] | 0 [Random init]" \
        in notes
    assert "Provenance: 10 stored records" in notes                             # 2 models x 2 seeds x 2 taps + 2
    # Table 4 at epoch 3: no SVM record there -> nothing for the trained models
    assert not tables.has_records(tables.build_table(recs, tables.TABLE4, DS, epoch=3))
    # old records without `epoch`: the training config's epochs (4 in the fixture), 0 when untrained
    old = make_record(DS, "ae", "AE", "mlp", "conv", 0, 1.0)
    assert tables.record_epoch(old) == 4 and tables.record_epoch(make_record(DS, "random", "R", "mlp", "y", 0, 1)) == 0
    assert main(["table", "--results", str(res), "--epoch", "3", "--no-plots", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "table4 skipped" in out and "| AE " in out
    assert main(["table", "--results", str(res), "--epoch", "-1", "--no-plots"]) == 2


def test_learning_curve_csv_and_figure(tmp_path):
    res = tmp_path / "r"
    _write_curve(res)
    assert main(["table", "--results", str(res), "--format", "csv", "--no-plots"]) == 0
    curve = pd.read_csv(res / DS / "learning_curve.csv")
    assert list(curve.columns) == tables.CURVE_COLUMNS
    dim = curve[(curve["model"] == "dim-l-infonce") & (curve["protocol"] == "mlp") & (curve["tap"] == "conv")]
    assert list(dim["epoch"]) == [1, 3, 6] and list(dim["n"]) == [2, 2, 2]
    assert list(dim["mean"]) == [57.5 + 0.5, 60.5 + 0.5, 65.0 + 0.5]
    assert dim["std"].tolist() == pytest.approx([math.sqrt(0.5)] * 3)           # seeds differ by 1
    # a second trained encoder evaluated at the last epoch only: the curve keeps following training seed 0
    for seed in (0, 1):
        rec = _epoch_record("dim-l-infonce", "DIM(L) (infoNCE)", "conv", seed, 90.0, 6)
        rec["config"]["encoder"]["train"] = {**rec["config"]["encoder"]["train"], "seed": 1}
        _write(res, rec)
    assert main(["table", "--results", str(res), "--format", "csv", "--no-plots"]) == 0
    curve = pd.read_csv(res / DS / "learning_curve.csv", dtype={"train_seeds": str})
    dim = curve[(curve["model"] == "dim-l-infonce") & (curve["protocol"] == "mlp") & (curve["tap"] == "conv")]
    assert list(dim["mean"]) == [57.5 + 0.5, 60.5 + 0.5, 65.0 + 0.5] and set(dim["train_seeds"]) == {"0"}
    t1 = pd.read_csv(res / DS / "table1.csv").set_index(["model", "column"])
    assert t1.loc[("dim-l-infonce", "conv"), "mean"] == pytest.approx((65.5 + 90.0) / 2)   # the table: both
    knn = curve[curve["protocol"] == "knn"]
    assert set(knn["metric"]) == {"accuracy_k20", "accuracy_k200"} and set(knn["epoch"]) == {3, 6}
    floor = curve[curve["model"] == "random"]
    assert list(zip(floor["epoch"], floor["mean"])) == [(0, 50.5)]
    assert not (curve["protocol"] == "svm").any()                               # no curve declared
    import matplotlib.pyplot as plt

    from repeval.report.plots import plot_curves
    png = plot_curves(tables.curve_table(_records(res), DS), tmp_path / "curve.png", "curves")
    img = plt.imread(png)
    assert img.shape[0] > 300 and img.shape[1] > 600 and img[..., :3].std() > 0.05


def test_table_x_holds_the_extra_protocols_only(results):
    for model, display, k20, k200, lin in (("ae", "AE", 40.0, 42.0, 45.0), ("random", "Random init", 30.0, 31.0, 33.0)):
        for tap in ("conv", "y"):
            rec = make_record(DS, model, display, "knn", tap, 0, None)
            rec.update(success=True, error=None, metrics={"accuracy_k20": k20, "accuracy_k200": k200})
            _write(results, rec)
            rec = make_record(DS, model, display, "linear", tap, 0, lin)
            rec["metrics"].update(converged=0.0 if model == "ae" and tap == "y" else 1.0, weight_decay=1e-4)
            _write(results, rec)
    recs = _records(results)
    assert {c.protocol for c in tables.TABLEX.columns} == {"knn", "linear"}
    assert not {"knn", "linear"} & (tables.TABLE1.protocols | tables.TABLE4.protocols)
    tx = tables.build_table(recs, tables.TABLEX, DS)
    assert list(dict.fromkeys(tx["column"])) == ["knn20_conv", "knn200_conv", "knn20_y", "knn200_y",
                                                 "linear_conv", "linear_y"]               # fc: no record, dropped
    assert tx["paper"].isna().all() and list(dict.fromkeys(tx["display"])) == ["AE", "Random init"]
    assert _cell(tx, "AE", "knn200_y")["delta_floor"] == 11.0
    md = tables.render_markdown(tx, tables.TABLEX, tables.footnotes(tx, recs, tables.TABLEX))
    assert md.startswith("## Table X: Extra protocols (not in the paper): weighted kNN accuracy (%) and linear probe "
                         "accuracy (%), CIFAR-10 (JPEG copy)")
    assert "paper" not in md.split("Notes:")[0].split("\n", 1)[1] and _md_row(md, "AE")[6] == "45.00†"
    assert "Wu et al., CVPR 2018" in md and "Rank agreement" not in md and "camera-ready" not in md
    check_snapshot(f"tableX_{DS}.md", md)
    check_snapshot(f"tableX_{DS}.tex", tables.render_latex(tx, tables.TABLEX, tables.footnotes(tx, recs, tables.TABLEX)))
    t1 = tables.build_table(recs, tables.TABLE1, DS)
    assert not t1["protocol"].isin(["knn", "linear"]).any()


def test_unreadable_and_invalid_records_are_skipped_with_a_warning(results, capsys):
    root = results / DS / "records"
    (root / "ae" / "mlp" / "broken.json").write_text("{not json")
    atomic_write_json(root / "ae" / "mlp" / "noseed.json", {"model": "ae", "protocol": "mlp", "seed": "zero"})
    recs, problems = tables.load_records(results, DS)
    assert len(problems) == 2 and any("record schema None" in p for p in problems)
    assert main(["table", "--results", str(results), "--dataset", DS, "--no-plots", "--format", "md"]) == 0
    err = capsys.readouterr().err
    assert err.count("repeval: warning: not counted: ") == 2 and "Traceback" not in err


def test_a_protocol_declared_in_a_test_gets_its_column_footnote_and_timing(tmp_path, capsys):
    """One definition (config + function + Reporting) and the runner; no edit to repeval.report.tables."""
    from dataclasses import dataclass

    from repeval.plugin.protocol import ReportColumn, Reporting, register_protocol
    from repeval.registry import PROTOCOLS

    @dataclass(frozen=True)
    class NN1Config:
        p: float = 2.0

    def nn1(inp, cfg, *, seed, device):
        """1-nearest-neighbour test accuracy (Cover & Hart, 1967) in the feature space."""
        nearest = torch.cdist(inp.test.features, inp.train.features, p=cfg.p).argmin(1)
        return {"accuracy": 100.0 * float((inp.train.labels[nearest] == inp.test.labels).float().mean())}

    register_protocol("nn1", NN1Config, taps="code", report=Reporting(
        columns=(ReportColumn("X", "nn1", "1-NN", "accuracy"),), title="1-NN accuracy (%)",
        footnote="1-NN = nearest-neighbour test accuracy (%) (protocol `nn1`)"))(nn1)
    res = tmp_path / "results"
    try:
        assert main(["run", "--models", "random", "--protocols", "nn1", "--quiet", "--no-table", "--set", "nn1.p=2",
                     "--workdir", str(tmp_path / "w"), "--results", str(res)]) == 0
        assert main(["table", "--results", str(res), "--no-plots"]) == 0
    finally:
        PROTOCOLS.unregister("nn1")
    printed = capsys.readouterr().out
    assert "## Table X: Extra protocols (not in the paper): 1-NN accuracy (%), digits" in printed
    md = (res / "digits" / "tableX.md").read_text()
    acc = float(_md_row(md, "Random init")[1])
    assert 50 < acc <= 100                                           # digits are easy even for a random encoder
    assert "Cells: 1-NN = nearest-neighbour test accuracy (%) (protocol `nn1`)." in md and "Protocol `nn1`: p=2.0." in md
    assert (res / "digits" / "tableX.tex").exists() and "nn1" in (res / "digits" / "tableX.csv").read_text()
    timing = pd.read_csv(res / "digits" / "timing.csv").set_index("model")
    assert "nn1_s" in timing.columns and timing.loc["random", "other_s"] == 0 and timing.loc["random", "records"] == 1
    rec = json.loads(next((res / "digits" / "records" / "random" / "nn1").glob("*.json")).read_text())
    assert timing.loc["random", "nn1_s"] == round(rec["timing_s"]["protocol"], 1)   # the column sums the records


def test_holm_adjustment_matches_the_step_down_rule():
    from repeval.report.tables.compare import holm
    adj = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> kept monotone at 0.06
    assert np.allclose(adj, [0.03, 0.06, 0.06, 0.02])


def test_comparisons_read_gaps_against_the_seed_spread_with_holm_over_every_column(results):
    from scipy.stats import ttest_ind
    from repeval.report.tables.compare import pairwise
    recs, _ = tables.load_records(results, DS)
    recs += [make_record(DS, "vae", "VAE", "svm", "fc", s, v) for s, v in enumerate([43.5, 44.5, 45.5, 46.5, 47.5])]
    df = pairwise(recs, DS)
    # only columns where both models have >= 2 seeds: the SVM columns (the fixture's probes have one seed)
    assert set(df["column"]) == {"svm_conv", "svm_fc", "svm_y"}, df
    assert len(df) == 3 + 3 + 1
    row = df[(df["column"] == "svm_conv") & (df["model_a"] == "ae") & (df["model_b"] == "dim-l-infonce")].iloc[0]
    assert row["diff"] == pytest.approx(52 - 61.5) and row["n_b"] == 4 and bool(row["separated"])
    assert row["p"] == pytest.approx(ttest_ind([50, 51, 52, 53, 54], [60, 61, 62, 63], equal_var=False).pvalue)
    overlap = df[(df["column"] == "svm_fc") & (df["model_a"] == "ae") & (df["model_b"] == "vae")].iloc[0]
    assert not bool(overlap["separated"])      # 40..44 vs 43.5..47.5: the seed ranges overlap
    assert (df["p_holm"] >= df["p"]).all() and (df["p_holm"] <= 1).all()
    assert df["p_holm"].min() == pytest.approx(min(1.0, len(df) * df["p"].min()))
    assert main(["table", "--results", str(results), "--dataset", DS, "--no-plots", "--format", "csv"]) == 0
    written = pd.read_csv(results / DS / "comparisons.csv")
    assert len(written) == 5 and set(written["column"]) == {"svm_conv", "svm_fc", "svm_y"}


def test_pairs_are_compared_at_an_epoch_both_reached():
    from repeval.report.tables.compare import _pair_epoch
    assert _pair_epoch({1, 3, 6, 10}, {1}, None) == (1, 1)        # a curve run still in progress: the last common
    assert _pair_epoch({1, 10}, {1, 10}, 1) == (1, 1)
    assert _pair_epoch({0}, {1, 10}, None) == (0, 10)             # the untrained floor against the last epoch
    assert _pair_epoch({1, 10}, {0}, 1) == (1, 0)
    assert _pair_epoch({3}, {1}, None) is None and _pair_epoch({0}, {1}, 10) is None


def test_pairwise_compares_at_the_last_common_epoch_whatever_the_record_order():
    """Every epoch of a curve is a configuration of its own: the comparison uses each epoch's records, not
    the one epoch whose group happens to be largest or newest (here every epoch has three seeds)."""
    from repeval.report.tables.compare import pairwise
    recs = [_epoch_record(m, m.upper(), "conv", seed, base + slope * epoch + 0.1 * seed, epoch)
            for m, base, slope in (("ae", 58.0, 0.4), ("dim-l-infonce", 55.0, 2.0))
            for epoch in (1, 2, 4) for seed in range(3)]
    for r in recs:
        r["config"]["epoch"] = r["epoch"]                     # as written by the runner (and _write)
    row = pairwise(recs, DS).query("column == 'conv'").iloc[0]
    assert (row["epoch_a"], row["epoch_b"]) == (4, 4) and row["diff"] == pytest.approx(-3.4)
    assert pairwise(recs, DS, epoch=1).query("column == 'conv'").iloc[0]["diff"] == pytest.approx(1.4)
