"""CLI habits: global options on either side of the subcommand, `repeval config`, logging, TensorBoard."""
import json
import logging
import sys

import pytest
import torch

import repeval.cli as cli
from repeval.cli import main
from repeval.config import ConfigError
from repeval.presets import PRESETS
from repeval.progress import LOGGER, TensorBoardLog, log, setup_logging
from repeval.registry import MODELS, PROTOCOLS

PLUGIN = """
import torch
from torch import nn
from repeval import register_encoder


class Flat(nn.Module):
    def forward(self, x):
        return {{"pix": nn.functional.avg_pool2d(x, 8).flatten(1)}}   # 48 numbers per image: cheap


register_encoder("{name}", Flat)
"""


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    setup_logging(0)


def _plugin(tmp_path, name):
    p = tmp_path / f"{name}.py"
    p.write_text(PLUGIN.format(name=name))
    return str(p)


def test_global_options_before_and_after_the_subcommand(tmp_path, capsys):
    early, late = _plugin(tmp_path, "cli-early"), _plugin(tmp_path, "cli-late")
    assert main(["--plugin", early, "list", "--plugin", late, "-q"]) == 0
    out = capsys.readouterr().out
    assert "cli-early" in out and "cli-late" in out and {"cli-early", "cli-late"} <= set(MODELS.names())
    args = cli._merge_globals(cli.build_parser().parse_args(
        ["-v", "--plugin", "a.py", "--log-file", "x.log", "run", "-v", "--plugin", "b.py", "--pretrained", "m=p.pt",
         "--backbone", "r=torchvision:resnet18", "--log-file", "y.log", "-q"]))
    assert args.plugin == ["a.py", "b.py"] and args.pretrained == ["m=p.pt"]
    assert args.backbone == ["r=torchvision:resnet18"] and args.verbose == 2 and args.quiet
    assert str(args.log_file) == "y.log" and not any(k.startswith("sub_") for k in vars(args))


def test_config_prints_every_resolved_section(capsys):
    assert main(["config", "--preset", "quick", "--set", "mlp.epochs=7", "--set", "train.lr=0.5"]) == 0
    out = capsys.readouterr().out
    headers = [line[1:-1] for line in out.splitlines() if line.startswith("[")]
    assert headers[:1 + len(PROTOCOLS)] == ["train", *PROTOCOLS.names()]
    assert {"vae.vae", "vae.beta-vae"} <= set(headers)            # family sections, one per registration

    def section(name):
        return out.split(f"[{name}]\n")[1].split("\n[")[0]
    assert "lr = 0.5" in section("train") and "epochs = 7" in section("mlp")
    assert "beta = 4.0" in section("vae.beta-vae") and "beta = 1.0" in section("vae.vae")

    assert main(["config", "--format", "json", "--protocols", "mlp", "--set", "mlp.epochs=7",
                 "--set", "vae.beta=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["preset"] == "quick" and list(data["sections"])[:2] == ["train", "mlp"] and "svm" not in data["sections"]
    assert data["sections"]["mlp"]["epochs"] == 7 and data["sections"]["train"]["epochs"] == 1
    assert data["sections"]["vae.beta-vae"]["beta"] == 2 == data["sections"]["vae.vae"]["beta"]


@pytest.mark.parametrize("argv, words", [
    (["config", "--set", "mlp.nosuch=1"], "bad config key 'mlp.nosuch'"),
    (["config", "--set", "train.epochs=many"], "train.epochs: cannot read 'many' as int"),
    (["config", "--preset", "huge"], "unknown preset 'huge'"),
    (["config", "--protocols", "nosuch"], "unknown protocol 'nosuch'"),
])
def test_config_errors_are_one_line(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("repeval: error: ") and words in err


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


def test_run_quiet_with_log_file(tmp_path, tiny_run, capsys):
    logfile = tmp_path / "run.log"
    plugin = _plugin(tmp_path, "cli-flat")
    assert main(tiny_run("--plugin", plugin, "--log-file", str(logfile), "--set", "mlp.epochs=1",
                         models="cli-flat")) == 0          # tiny_run passes --quiet
    err = capsys.readouterr().err
    assert "[cli-flat]" not in err and "1 records written" in err
    text = logfile.read_text()
    lines = [line for line in text.splitlines() if "[cli-flat]" in line]
    assert any("encoder ready" in line for line in lines) and any("mlp/pix/seed0" in line for line in lines)
    assert main(["run", "--models", "nosuch", "--log-file", str(logfile)]) == 2
    assert "ERROR unknown model 'nosuch'" in logfile.read_text()


def test_runner_calls_the_epoch_callback_with_mean_losses(tmp_path):
    from repeval.data import Dataset
    from repeval.runner import RunOptions, run

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 3, 32, 32, generator=g) * 2 - 1, torch.arange(96) % 4
    ds = Dataset("tiny", x[:64], y[:64], x[64:], y[64:], 4)
    seen = []
    opts = RunOptions(models=["ae"], protocols=["mlp"], preset=PRESETS.get("quick"), quiet=True,
                      overrides={"train": {"epochs": 2, "batch_size": 32}, "mlp": {"epochs": 1}},
                      workdir=tmp_path / "work", results=tmp_path / "results",
                      on_epoch=lambda model, epoch, losses: seen.append((model, epoch, dict(losses))))
    run(opts, ds)
    assert [(m, e) for m, e, _ in seen] == [("ae", 1), ("ae", 2)]
    record = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert [losses for _, _, losses in seen] == record["history"] and record["history"][0]   # the same means


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
