"""Registering encoders (repeval/plugin/zoo.py): a pretrained checkpoint as a frozen encoder, and one that does
not load or fit."""
import torch

from repeval.cli import main
from repeval.estimators.nets import SharedEncoder
from repeval.registry import MODELS
from tests.helpers import read_records


def test_pretrained_checkpoint(tmp_path, tiny_run, capsys):
    torch.manual_seed(123)
    enc = SharedEncoder()
    torch.save(enc.state_dict(), tmp_path / "enc.pt")
    try:
        assert main(["--pretrained", f"mine={tmp_path / 'enc.pt'}"] + tiny_run(models="mine")) == 0
        rec = read_records(tmp_path / "results")["digits/records/mine/mlp/y-seed0-epoch0.json"]
        from repeval.store.storage import state_dict_hash
        assert rec["encoder_hash"] == state_dict_hash(enc.state_dict())
    finally:
        MODELS.unregister("mine")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    capsys.readouterr()
    try:
        assert main(["--pretrained", f"bad={tmp_path / 'bad.pt'}"] + tiny_run(models="bad,random")) == 1
    finally:
        MODELS.unregister("bad")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot load checkpoint" in err[0] and "bad.pt" in err[0]
    assert "3 records written" in err[1]    # one bad checkpoint does not stop the other models
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    try:
        assert main(["--pretrained", f"wrong={tmp_path / 'wrong.pt'}"] + tiny_run(models="wrong")) == 1
    finally:
        MODELS.unregister("wrong")
    assert "does not fit SharedEncoder" in capsys.readouterr().err
