"""Table T (repeval/report/tables/build.py TABLET) and the records no table shows (repeval/report/tables/coverage.py):
every tap of every model reaches a table, whatever the encoder calls it."""
from __future__ import annotations

from repeval.report import tables
from repeval.cli import main
from tests.repeval.test_tables import _md_row, _write, make_record

DS = "digits"


def _recs(specs) -> list[dict]:
    """[(model, display, protocol, tap, [values], epoch)] -> record dicts."""
    return [make_record(DS, m, d, p, t, s, v, epoch) for m, d, p, t, vals, epoch in specs for s, v in enumerate(vals)]


PLUGIN = [("myenc", "My encoder", "mlp", "conv", [50.0], 0), ("myenc", "My encoder", "mlp", "fc", [45.0], 0),
          ("myenc", "My encoder", "mlp", "emb", [61.0, 63.0], 0), ("myenc", "My encoder", "ndm", "emb", [0.5], 0)]
BACKBONE = [("bb18", "bb18", "mlp", "layer3", [80.0], 4), ("bb18", "bb18", "mlp", "layer4", [70.0], 4)]


def test_every_tap_has_a_row_with_numbers():
    recs = _recs(PLUGIN + BACKBONE)
    t = tables.build_table(recs, tables.TABLET, DS)
    md = tables.render_markdown(t, tables.TABLET, tables.footnotes(t, recs, tables.TABLET))
    assert _md_row(md, "My encoder / emb") == ["My encoder / emb", "62.00 ± 1.41 <sup>n=2</sup>", "0.500"]
    assert _md_row(md, "My encoder / conv") == ["My encoder / conv", "50.00", "—"]
    assert _md_row(md, "bb18 / layer3")[1:] == ["80.00", "—"]
    assert list(dict.fromkeys(t["column"])) == ["mlp", "ndm"] and set(t["tap"]) == {"conv", "fc", "emb",
                                                                                   "layer3", "layer4"}
    assert "Cells: each protocol's reported metric" in md and md.startswith("## Table T: Every tap of every model")
    assert t["floor"].isna().all()


def test_paper_tables_keep_their_columns_and_drop_rows_without_cells():
    recs = _recs(PLUGIN + BACKBONE)
    t1 = tables.build_table(recs, tables.TABLE1, DS)
    assert set(t1["column"]) == {"conv", "fc"}                 # emb is not a paper column
    assert "bb18" not in set(t1["model"])                       # no all-dash row: its taps are in Table T
    assert _cell(t1, "My encoder", "conv") == 50.0


def _cell(df, display, column) -> float:
    return float(df[(df["display"] == display) & (df["column"] == column)]["mean"].iloc[0])


def test_unshown_names_records_at_other_epochs_failed_and_unreported():
    recs = _recs(BACKBONE + [("bb18", "bb18", "mlp", "layer3", [60.0], 2),        # a learning-curve point
                             ("bb18", "bb18", "mlp", "layer4", [None], 4)])      # a failed seed
    recs.append({**recs[0], "protocol": "gone"})                                # a protocol not registered now
    groups = tables.unshown(recs)
    assert {k.split(" ")[0]: len(v) for k, v in groups.items()} == {"at": 1, "failed": 1, "of": 1}
    line = tables.format_unshown(groups, len(recs))
    assert line.startswith("3 of 5 records in no table: ") and "bb18/mlp/layer3@2" in line
    assert "\n" not in line
    assert tables.unshown(recs[:2]) == {} and tables.format_unshown({}, 2) == "every record (2) is in a table"


def test_table_command_writes_table_t_and_says_what_is_left_out(tmp_path, capsys):
    for r in _recs(PLUGIN + [("bb18", "bb18", "mlp", "layer3", [60.0], 2)] + BACKBONE):
        _write(tmp_path, r)
    assert main(["table", "--results", str(tmp_path), "--dataset", DS, "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "digits: 1 of 8 records in no table: 1 at another encoder epoch" in out
    assert "| bb18 / layer4 " in (tmp_path / DS / "tableT.md").read_text()
    csv = (tmp_path / DS / "tableT.csv").read_text()
    assert "emb" in csv and "layer4" in csv


def test_run_summary_shows_a_backbone_row(tmp_path, capsys):
    for r in _recs(BACKBONE):
        _write(tmp_path, r)
    tables.print_tables(tmp_path, DS, ["bb18"])
    out = capsys.readouterr().out
    assert "(no table records" not in out and out.count("| bb18 / layer") == 2
