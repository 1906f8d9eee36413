"""``repeval run --config FILE.toml`` (repeval/engine/config_file.py): reads back exactly what ``repeval config``
prints, merged under ``--set``, and resolves (and so records) exactly like the same values given as ``--set``."""
from __future__ import annotations

import tomllib

import pytest

from repeval.cli import main
from repeval.config import ConfigError, format_sections
from repeval.engine.config_file import overrides_from_toml
from repeval.engine.presets import PRESETS
from repeval.registry import MODELS, PROTOCOLS
from repeval.engine.runner import RunOptions, resolve_configs

SETS = ["--set", "mlp.epochs=3", "--set", "dim.dim-g.critic_units=64", "--set", "train.eval_epochs=1"]


def _config(capsys, *argv) -> str:
    assert main(["config", *argv]) == 0
    return capsys.readouterr().out


def _body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_round_trip_config_prints_what_it_reads(tmp_path, capsys):
    printed = _config(capsys, "--preset", "cpu", *SETS)
    path = tmp_path / "cfg.toml"
    path.write_text(printed)
    assert _body(_config(capsys, "--config", str(path))) == _body(printed)   # same preset, same values
    data = tomllib.loads(printed)
    assert data["preset"] == "cpu" and data["dim"]["dim-g"]["critic_units"] == 64
    assert data["dim"]["dim-l-infonce"]["critic_units"] == 1024                # the other DIM rows keep theirs
    again = tomllib.loads(_config(capsys, "--config", str(path), "--set", "mlp.epochs=4", "--preset", "quick"))
    assert again["mlp"]["epochs"] == 4 and again["preset"] == "quick"        # the command line wins
    assert again["svm"] == data["svm"] and again["train"]["eval_epochs"] == [1]


def test_a_file_resolves_like_the_same_set_overrides(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text(_config(capsys, "--preset", "cpu", *SETS))
    preset, overrides = overrides_from_toml(tomllib.loads(path.read_text()), str(path))
    protocols, models = PROTOCOLS.names(), MODELS.names()
    from repeval.config import parse_overrides
    direct = RunOptions(models, protocols, PRESETS.get("cpu"), parse_overrides(SETS[1::2]))
    via_file = RunOptions(models, protocols, PRESETS.get(preset), overrides)
    a, b = resolve_configs(direct), resolve_configs(via_file)
    assert a.train == b.train and a.protocols == b.protocols
    assert a.families == b.families and set(a.families) == set(models)
    assert b.families["dim-g"].critic_units == 64


def test_records_of_a_set_run_are_present_for_the_same_config_file(tmp_path, capsys):
    sets = ["--set", "train.epochs=1", "--set", "train.max_train=256", "--set", "mlp.epochs=2"]
    where = ["--models", "ae", "--protocols", "mlp", "--seeds", "1", "--quiet", "--no-table",
             "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    assert main(["run", *where, *sets]) == 0
    capsys.readouterr()
    path = tmp_path / "cfg.toml"
    path.write_text(_config(capsys, *sets))
    assert main(["run", *where, "--config", str(path)]) == 0
    assert "0 records written, 3 already present" in capsys.readouterr().err
    # --set over the file: a new identity; the records of the file's are kept unless --rerun
    assert main(["run", *where, "--config", str(path), "--set", "mlp.epochs=1", "--dry-run"]) == 0
    assert "3 mlp records of another configuration kept" in capsys.readouterr().out
    assert main(["run", *where, "--config", str(path), "--set", "mlp.epochs=1", "--dry-run", "--rerun", "ae/mlp"]) == 0
    assert "0 records present, 3 to compute" in capsys.readouterr().out


@pytest.mark.parametrize("text, words", [
    ("x = 1\n", "top-level key 'x' is not a [section]"),
    ("[train\n", "not valid TOML"),
    ('[train]\nepochs = "many"\n', "train.epochs: cannot read 'many' as int (settings from --config"),
    ("[mlp]\nepoch = 3\n", "bad config key 'mlp.epoch' (did you mean 'epochs'?)"),
    ("[dim.dim-zz]\nalpha = 1.0\n", "bad config section 'dim.dim-zz' (did you mean 'dim.dim-g'?)"),
    (None, "--config: file not found"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, capsys, text, words):
    path = tmp_path / "cfg.toml"
    if text is not None:
        path.write_text(text)
    assert main(["run", "--models", "ae", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("repeval: error: ") and words in err, err


def test_toml_sections_and_none_values():
    preset, ov = overrides_from_toml({"preset": "cpu", "train": {"epochs": 2}, "dim": {"alpha": 1.0, "dim-g": {"beta": 0.5}}},
                                     "f")
    assert preset == "cpu" and ov == {"train": {"epochs": 2}, "dim": {"alpha": 1.0}, "dim.dim-g": {"beta": 0.5}}
    with pytest.raises(ConfigError, match="top-level key 'preset'"):
        overrides_from_toml({"preset": 3}, "f")
    text = format_sections({"s": {"a": None, "b": [1, 2]}}, {"preset": "quick"})
    assert tomllib.loads(text) == {"preset": "quick", "s": {"b": [1, 2]}}
