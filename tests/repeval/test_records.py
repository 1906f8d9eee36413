"""Result records (repeval/store/records.py): an invalid or edited record is reported, skipped by the tables and
recomputed."""
import json

import pytest

from repeval.report import tables
from repeval.cli import main


@pytest.mark.parametrize("content", ["null", "[]", '{"schema": 2, "model": 3}', "EDIT"])
def test_invalid_records_are_reported_and_recomputed(tmp_path, tiny_run, capsys, content):
    args = tiny_run(models="random")
    assert main(args) == 0
    path = tmp_path / "results/digits/records/random/mlp/y-seed0-epoch0.json"
    good = path.read_text()
    if content == "EDIT":
        rec = json.loads(good)
        rec["metrics"]["accuracy"] = 129.44
        content = json.dumps(rec)
    path.write_text(content)
    recs, problems = tables.load_records(tmp_path / "results", "digits")      # the tables ignore it
    assert len(recs) == 2 and len(problems) == 1 and str(path) in problems[0]
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "invalid record" in err and "1 records written, 2 already present" in err
    assert json.loads(path.read_text())["metrics"] == json.loads(good)["metrics"]
