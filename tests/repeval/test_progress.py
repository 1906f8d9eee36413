"""Logging and per-epoch loss callbacks (repeval/store/progress.py): console and log-file levels, TensorBoard."""
import logging
import sys

import pytest
import torch

from repeval.cli import main
from repeval.config import ConfigError
from repeval.store.progress import LOGGER, TensorBoardLog, current_setup, log, setup_logging

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_logging_levels_and_log_file(tmp_path, capsys):
    path = tmp_path / "logs" / "run.log"
    setup_logging(0)
    log("info line A")
    log("error: broken B")
    log("warning: odd C", quiet=True)
    assert capsys.readouterr().err.splitlines() == ["info line A", "repeval: error: broken B", "repeval: warning: odd C"]
    setup_logging(-1, path)                                    # -q with a log file
    log("info line C")
    LOGGER.debug("debug line D")
    LOGGER.warning("warn E")
    assert capsys.readouterr().err.splitlines() == ["repeval: warning: warn E"]
    text = path.read_text()
    assert "INFO info line C" in text and "DEBUG debug line D" in text and "WARNING warn E" in text
    setup_logging(1)                                           # -v: debug on the console; handlers replaced
    LOGGER.debug("debug line F")
    assert capsys.readouterr().err.splitlines() == ["debug line F"]
    assert "debug line F" not in path.read_text()
    assert sum(isinstance(h, logging.FileHandler) for h in LOGGER.handlers) == 0


@pytest.mark.parametrize("verbosity", [-1, 0, 1])
def test_a_worker_can_repeat_the_logging_setup(tmp_path, verbosity):
    setup_logging(verbosity, tmp_path / "run.log")
    assert current_setup() == (verbosity, tmp_path / "run.log")
    setup_logging(verbosity)
    assert current_setup() == (verbosity, None)


def test_tensorboard_missing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'repeval\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")
    assert main(["run", "--models", "random", "--protocols", "mlp", "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tensorboard" in err


def test_tensorboard_writes_epoch_losses(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLog(tmp_path / "tb")
    for epoch, loss in ((1, 0.75), (1, 0.75), (2, 0.5)):           # an epoch passed twice is written once
        tb("dim-l", epoch, {"loss": loss, "critic": torch.tensor(1.5)})
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["dim-l/critic", "dim-l/loss"]
    assert [(e.step, e.value) for e in acc.Scalars("dim-l/loss")] == [(1, 0.75), (2, 0.5)]
