"""Strict configuration (repeval/config.py): an unknown key or section is a one-line error naming the
valid ones."""
from repeval.cli import main


def test_cli_bad_config_key(capsys, tiny_run):
    assert main(tiny_run("--set", "train.nosuch=1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.nosuch" in err and "epochs" in err
    assert main(tiny_run("--set", "nosection.x=1")) == 2
    assert "bad config section 'nosection'" in capsys.readouterr().err
