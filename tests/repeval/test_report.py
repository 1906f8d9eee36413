"""The generated report (repeval/report/tables/report.py, templates/): REPORT.md and index.html rendered from
a small set of fixture records, its prose conditional on the data, byte-identical when rebuilt, the
Markdown converter, the BiGAN diagnosis parser, and the page in a real browser (headless Chromium).

The rendered fixture report is a snapshot (tests/repeval/snapshots/report_cifar10-jpeg.md); regenerate
with ``REPEVAL_UPDATE_SNAPSHOTS=1`` after an intended change and review the diff.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from repeval.report import tables
from repeval.cli import main
from repeval.report.tables.diagnosis import parse
from repeval.report.tables.markdown import to_html
from repeval.report.tables.report import keep_newlines, pval, span
from repeval.store.records import train_seed

from .test_tables import DS, _epoch_record, _write, check_snapshot, make_record, write_fixture

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

DIAGNOSIS = """# Output of tests/benchmarks/bigan_diagnosis.py (a fixture)
$ python tests/benchmarks/bigan_diagnosis.py --images 2000 --steps 100 --every 50 --variants ours-v1,published
## ours-v1: {'penalize': ('x', 'z'), 'lr': 0.0001, 'wd': 0.0, 'prior': 'normal'}
step    0: PR conv  20.0 fc  21.0 y  15.0 | fc linear probe 30.00%
step   50: PR conv   6.0 fc   4.0 y   3.0 | fc linear probe 31.00% | disc 0.600 enc_gen 5.000 gp 0.100 grad_cos 0.500 | 1.00 s/step
step  100: PR conv   5.0 fc   3.0 y   2.0 | fc linear probe 32.00% | disc 0.500 enc_gen 6.000 gp 0.100 | 1.00 s/step
## published: {'penalize': (), 'lr': 0.0002, 'wd': 2.5e-05, 'prior': 'uniform'}
step    0: PR conv  20.0 fc  21.0 y  15.0 | fc linear probe 30.00%
step  100: PR conv   3.0 fc   1.5 y   1.0 | fc linear probe 33.00% | disc 900.0 enc_gen 1200.0 gp 0.000 | 1.00 s/step
"""


def curve_results(root: Path) -> Path:
    """The table fixture (its records at epoch 4), plus probe curves (epochs 1, 2, 4 on every tap, 3 seeds, some not converged),
    training histories, kNN / linear records and the random-init floor at epoch 0."""
    results = write_fixture(root / "results", datasets=(DS,))
    for model, display, base, slope in (("ae", "AE", 58.0, 0.4), ("dim-l-infonce", "DIM(L) (infoNCE)", 55.0, 2.0),
                                        ("bigan", "BiGAN", 50.0, 0.1)):
        for epoch in (1, 2, 4):
            for seed in (0, 1, 2):
                for i, tap in enumerate(("conv", "fc", "y")):
                    rec = _epoch_record(model, display, tap, seed, base - 3 * i + slope * epoch + 0.1 * seed, epoch,
                                        converged=0.0 if model == "ae" else 1.0,
                                        gain_over_half_budget=0.9 if model == "ae" else 0.2,
                                        train_accuracy=80.0, accuracy_avg_last=base + slope * epoch - 0.2)
                    rec["history"] = [{"disc": 0.4 + 0.1 * e, "enc_gen": 5.0 - e} if model == "bigan" else
                                      {"local": 1.0 - 0.3 * e, "mse": 0.1} for e in range(epoch)]
                    _write(results, rec)
        for tap in ("conv", "fc", "y"):
            rec = _epoch_record(model, display, tap, 0, None, 4, "knn")
            rec.update(success=True, error=None, metrics={"accuracy_k20": base, "accuracy_k200": base - 1})
            _write(results, rec)
    for seed in (0, 1, 2):
        for i, tap in enumerate(("conv", "fc", "y")):
            _write(results, _epoch_record("random", "Random init", tap, seed, 45.0 - 3 * i + 0.2 * seed, 0,
                                          converged=1.0, gain_over_half_budget=0.1, train_accuracy=90.0))
    return results


@pytest.fixture
def results(tmp_path) -> Path:
    return curve_results(tmp_path)


def _report(results: Path, *extra: str) -> tuple[str, str]:
    assert main(["table", "--results", str(results), "--dataset", DS, *extra]) == 0
    out = results / DS
    return (out / "REPORT.md").read_text(encoding="utf-8"), (out / "index.html").read_text(encoding="utf-8")


def test_report_renders_every_number_from_the_records(results):
    md, html = _report(results, "--no-plots")
    assert "{{" not in md and "{%" not in md and "{{" not in html
    recs = tables.load_records(results, DS)[0]
    t1 = tables.build_table(recs, tables.TABLE1, DS)
    dim = t1[(t1["model"] == "dim-l-infonce") & (t1["column"] == "conv")].iloc[0]
    assert f"{dim['mean']:.2f} ± {dim['std']:.2f}" in md                          # the table's own cell
    assert "## How to read the marks" in md and "**†** not converged" in md
    # DIM(L) infoNCE vs the AE, read against the probe seeds, Holm-adjusted over the counted comparisons
    comp = tables.pairwise(recs, DS)
    n = int((~comp["degenerate"]).sum())
    assert f"Holm-adjusted over the {n} comparisons" in md
    row = comp[(comp["column"] == "conv") & (comp["model_a"] == "ae") & (comp["model_b"] == "dim-l-infonce")].iloc[0]
    assert pval(row["p_holm"]) in md
    assert "the probe tells the two *checkpoints* apart" in md                   # spread: probe seeds
    # why we differ: epochs against the paper preset's, the probe schedule, the unconverged Table 1 cells
    why = md.split("## Why our numbers differ from the paper")[1]
    assert "4 epochs against the paper's 1000" in why and "Probe schedule" in why
    k = int(t1.loc[t1["mean"].notna(), "not_converged"].sum())
    assert f"The probe did not converge: {k} of {int(t1['mean'].notna().sum())} Table 1 cells" in why
    assert "(`accuracy_avg_last`)" in why
    # Table 4 on the paper's scales; the rebuilt report is byte-identical (no clock in it)
    assert "SSIM (released code)" in md and "NDM (raw codes)" in md and "MINE (nats) Δ" not in md
    again, html2 = _report(results, "--no-plots")
    assert again == md and html2 == html
    check_snapshot(f"report_{DS}.md", md)


def test_report_prose_is_conditional_on_the_data(tmp_path, results):
    md, _ = _report(results, "--no-plots")
    assert "BiGAN, diagnosed" not in md                         # no diagnosis file: no paragraph
    assert "## Feature spectrum" not in md                      # no record carries a spectrum
    (results / DS / "bigan_diagnosis.txt").write_text(DIAGNOSIS)
    md, _ = _report(results, "--no-plots")
    para = md.split("**BiGAN, diagnosed")[1].split("\n\n")[0]
    assert "20.0 / 21.0 / 15.0 at initialisation" in para
    assert "3.0 / 1.5 / 1.0 after 100 steps with the published settings (whose losses then diverged)" in para
    assert "loss 0.50 at step 100" in para                      # the diverged run is left out of the range
    assert "No variant tried avoids the collapse" in para
    # a dataset the paper has no numbers for: no paper reading at all
    res = tmp_path / "digits"
    for m, d, v in (("ae", "AE", 90.0), ("random", "Random init", 80.0)):
        for seed in range(3):
            _write(res, make_record("digits", m, d, "mlp", "conv", seed, v + seed))
    md, _ = (main(["table", "--results", str(res), "--dataset", "digits", "--no-plots"]),
             (res / "digits" / "REPORT.md").read_text())[1], None
    assert "The paper reports no numbers for digits" in md
    assert "Why our numbers differ" not in md and "Rank agreement with the paper" not in md
    prose = re.sub(r"<details>.*?</details>", "", md.split("## Table 1")[1].split("## Provenance")[0], flags=re.S)
    assert "**Δ**" not in md and "paper" not in prose


def test_report_says_whether_the_headline_holds_across_training_seeds(results):
    """Two more trained encoders (training seeds 1, 2) of the AE and of DIM(L) infoNCE at the tables' epoch:
    the comparison reads the spread over training seeds and the report says whether every encoder of
    DIM(L) is ahead of every AE, tap by tap."""
    def add_encoders(offsets):
        for model in ("ae", "dim-l-infonce"):
            for tseed in (1, 2):
                base = tables.load_records(results, DS)[0]
                for i, tap in enumerate(("conv", "fc", "y")):
                    for seed in (0, 1, 2):
                        rec = next(r for r in base if r["model"] == model and r["protocol"] == "mlp"
                                   and r["tap"] == tap and r["seed"] == seed and r["epoch"] == 4
                                   and train_seed(r["config"]) == 0)
                        rec["config"]["encoder"]["train"] = {**rec["config"]["encoder"]["train"], "seed": tseed}
                        rec["metrics"]["accuracy"] += offsets[model][tseed][i]
                        _write(results, rec)

    add_encoders({"ae": {1: (-0.5,) * 3, 2: (0.5,) * 3}, "dim-l-infonce": {1: (0.3,) * 3, 2: (-0.3,) * 3}})
    md, _ = _report(results, "--no-plots")
    assert "the probe tells the two *checkpoints* apart" not in md
    assert "The spread is over training seeds (3 trained encoders of DIM(L) (infoNCE), 3 of the AE" in md
    assert "times the larger of the two training-seed stds" in md
    assert "The claim holds for every training seed" in md
    assert "*beyond the spread* means the gap holds for every training seed" in md
    assert "(they are in the tables): AE training seeds 1, 2; DIM(L) (infoNCE) training seeds 1, 2." in md
    assert "Welch's test, Holm-adjusted over the" in md                          # per-encoder means, 3 against 3
    assert "training seed 1: `mlp` at epoch 4; training seed 2: `mlp` at epoch 4)." in md   # the coverage line
    add_encoders({"ae": {1: (0.0,) * 3, 2: (0.0, 5.0, 0.0)}, "dim-l-infonce": {1: (0.0,) * 3, 2: (0.0,) * 3}})
    md, _ = _report(results, "--no-plots")
    assert "The claim does not hold for every training seed: the\nencoders' ranges fc overlap or are reversed." in md


def test_figures_say_something_or_are_left_out(tmp_path, results):
    _report(results)
    out = results / DS
    assert (out / "table1.png").exists() and (out / "learning_curve.png").exists()
    # one encoder epoch per model and saturated accuracies: no curve figure, no Table 1 figure
    res = tmp_path / "sat"
    for m, d in (("ae", "AE"), ("vae", "VAE"), ("random", "Random init")):
        for seed in range(3):
            _write(res, make_record("digits", m, d, "mlp", "conv", seed, 97.0 + 0.1 * seed + (m == "ae")))
    (res / "digits").mkdir(exist_ok=True)
    (res / "digits" / "learning_curve.png").write_bytes(b"stale")
    assert main(["table", "--results", str(res), "--dataset", "digits"]) == 0
    assert not (res / "digits" / "table1.png").exists() and not (res / "digits" / "learning_curve.png").exists()
    md = (res / "digits" / "REPORT.md").read_text()
    assert "No figure: conv (saturated: every row at 97.1–98.1 %)" in md and "table1.png" not in md


def test_inert_settings_are_not_listed():
    from repeval.report.tables.render import footnotes
    recs = []
    for sched in ("cosine", "multistep"):
        rec = make_record(DS, "ae" if sched == "cosine" else "vae", "AE" if sched == "cosine" else "VAE", "mlp",
                          "conv", 0, 50.0)
        rec["config"]["protocol_config"] = {"epochs": 10, "schedule": sched, "milestones": [50, 100], "gamma": 0.1}
        recs.append(rec)
    df = tables.build_table(recs, tables.TABLE1, DS)
    note = next(n for n in footnotes(df, recs, tables.TABLE1) if n.startswith("Protocol `mlp`"))
    cosine, multistep = note.split(" | ")
    assert "milestones" not in cosine and "gamma" not in cosine and "schedule=cosine" in cosine
    assert "milestones=(50, 100)" in multistep and "gamma=0.1" in multistep


def test_markdown_to_html():
    md = ("# T\n\nText with `a<b` and **bold** and <sup>n=2</sup>.\nsame paragraph\n\n| a | b |\n|---|--:|\n"
          "| 1 | 2 |\n\n- one\n  more\n- two\n\n1. x\n1. y\n\n![cap](f.png)\n\n<details>\n<summary>S</summary>\n\n"
          "```bash\nrepeval table\n```\n\n</details>\n")
    html, toc = to_html(md)
    assert toc == [(1, "t", "T")]
    assert "<code>a&lt;b</code>" in html and "<strong>bold</strong>" in html and "<sup>n=2</sup>" in html
    assert "<p>Text with" in html and "same paragraph</p>" in html
    assert '<td class="right">2</td>' in html and "<ul><li>one more</li><li>two</li></ul>" in html
    assert "<ol><li>x</li><li>y</li></ol>" in html and '<img src="f.png" alt="cap">' in html
    assert "<details>" in html and "<pre><code>repeval table</code></pre>" in html


def test_template_lines_keep_or_lose_their_newline():
    src = "{% if x %}\ntext {% if y %}y{% endif %}\n{# c #}\nnext\n"
    assert keep_newlines(src) == 'text {% if y %}y{% endif %}{{ "" }}'.join(["{% if x %}\n", "\n{# c #}\nnext\n"])
    assert span([-0.5, 0.25]) == "−0.50 to 0.25" and span([1.0, 2.0]) == "1.00–2.00" and span([]) == "—"
    assert pval(0.034) == "0.034" and pval(4.1e-5) == "4.1e-05"


def test_diagnosis_parser_reads_every_step():
    d = parse(DIAGNOSIS)
    assert d.variants() == ["ours-v1", "published"] and d.images == 2000
    assert d.initial_pr() == (20.0, 21.0, 15.0) and d.pr("ours-v1", 100) == (5.0, 3.0, 2.0)
    assert d.at("ours-v1", 50, "grad_cos") == 0.5 and d.at("ours-v1", 100, "grad_cos") is None
    assert d.run("published").diverged and not d.run("ours-v1").diverged
    assert d.values("disc", 100, diverged=False) == [0.5] and d.stride() == (50, 100)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


CHECK = """<script>window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var ok = function (i) { return i.complete && i.naturalWidth > 0; };
  var r = {images: imgs.length, loaded: imgs.filter(ok).length,
           broken: imgs.filter(function (i) { return !ok(i); }).map(function (i) { return i.getAttribute("src"); }),
           tables: document.querySelectorAll("table").length, rows: document.querySelectorAll("tbody tr").length,
           headings: Array.from(document.querySelectorAll("h2")).map(function (h) { return h.textContent; })};
  var m = document.createElement("pre"); m.id = "repeval-check"; m.textContent = JSON.stringify(r);
  document.body.appendChild(m);
});</script>
"""


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed and could not be installed here "
                    "(Debian: apt-get install -y chromium; .ci/run installs it when absent)")
def test_index_html_in_a_real_browser(results, tmp_path):
    """index.html in headless Chromium: every image loads, the tables are there; a screenshot is kept."""
    (results / DS / "recon").mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt
    import numpy as np
    plt.imsave(results / DS / "recon" / "ae.png", np.linspace(0, 1, 8 * 16 * 3).reshape(8, 16, 3))
    _, html = _report(results)
    out = results / DS
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert {"table1.png", "table4.png", "learning_curve.png", "recon_grids.png"} <= set(srcs)
    page = out / "browser-check.html"          # the page as written, plus a script that reports what loaded
    page.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--virtual-time-budget=10000", "--allow-file-access-from-files"]
    dom = subprocess.run([*cmd, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="repeval-check">([^<]*)</pre>', dom.stdout)
    assert m, f"no check marker in the dumped DOM (rc {dom.returncode}): {dom.stderr[-2000:]}"
    check = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["images"] == len(srcs) and check["loaded"] == check["images"], check["broken"]
    assert check["tables"] >= 5 and check["rows"] > 20
    assert {"Table 1: the non-linear probe", "Table 4 and Table X", "Why our numbers differ from the paper",
            "Provenance"} <= set(check["headings"])
    shot = tmp_path / "index.png"
    subprocess.run([*cmd, "--window-size=1280,2400", f"--screenshot={shot}", (out / "index.html").as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 10_000
    img = plt.imread(shot)
    assert img.shape[0] >= 2000 and img[..., :3].std() > 0.02          # a page was drawn, not a blank one


def test_the_reproduce_command_names_the_dataset_when_it_is_not_the_presets():
    import pandas as pd

    from repeval.report.tables.report import Facts

    def facts(ds, preset):
        empty = pd.DataFrame()
        return Facts([{"model": "ae", "dataset": ds, "preset": preset, "epoch": 0}], ds, {}, {}, empty, empty, empty,
                     empty, None, {}, Path("."))
    assert facts("digits", "quick").dataset_arg == ""              # the preset's own dataset
    assert facts("cifar10", "curve").dataset_arg == ""
    assert facts("cifar100", "curve").dataset_arg == "cifar100"    # a built-in reader, named
    assert facts("cifar10-jpeg", "curve").dataset_arg == "npz:DIR"  # a copy read from a folder


def test_the_ndm_line_marks_each_unconverged_fit(tmp_path):
    """The report's NDM line daggers the raw and the z-scored value by their own fit's flag, as the table does."""
    results = write_fixture(tmp_path / "results", datasets=(DS,))
    rec = make_record(DS, "ae", "AE", "ndm", "y", 0, 0.05)
    rec["metrics"].update(ndm_converged=0.0, ndm_raw_converged=1.0, ndm_stderr=0.01, ndm_raw_stderr=0.01)
    _write(results, rec)
    md, _ = _report(results, "--no-plots")
    line = next(s for s in md.splitlines() if s.startswith("- **NDM**"))
    raw, z = re.search(r"[:;] AE (.*?)(?:;|\.$)", line).group(1).split(" / ")
    assert raw.startswith("0.03 (") and z.startswith("0.05† (")
    assert "†" not in line.replace(z, "")                       # no other fit says it did not converge
    assert "† = that fit had not converged" in md
