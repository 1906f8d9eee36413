"""torchvision/timm backbones as frozen encoders: taps, declared input adaptation, local weights only."""
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from repeval.plugin.backbones import BackboneSpec, default_taps, parse_backbone_arg
from repeval.cli import main
from repeval.config import ConfigError
from repeval.registry import MODELS, PROTOCOLS, RegistryError
from repeval.store.storage import CheckpointError, state_dict_hash
from repeval.plugin.zoo import register_backbone
from tests.repeval.test_tables import _md_row

IMAGENET = [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory) -> Path:
    """The README's weights file: torchvision's ResNet-18 (seeded init) saved as a state dict."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("repeval: error: "), err
    return err


def test_readme_example_end_to_end(tmp_path, r18_file, capsys):
    protocols = [p for p in ("mlp", "knn", "linear") if p in PROTOCOLS]
    argv = ["run", "--models", "r18", "--protocols", ",".join(protocols), "--dataset", "digits",
            "--backbone", f"r18=torchvision:resnet18:{r18_file}",          # a global option after `run`
            "--set", "mlp.epochs=1", "--seeds", "1", "--quiet", "--no-table",
            "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    assert main(argv) == 0
    recs = sorted((tmp_path / "results/digits/records/r18").rglob("*.json"))
    assert [p.relative_to(tmp_path / "results/digits/records/r18").as_posix() for p in recs] == sorted(
        f"{p}/{t}-seed0-epoch0.json" for p in protocols for t in ("layer3", "layer4"))   # frozen: epoch 0
    rec = json.loads(recs[-1].read_text())
    assert rec["success"] and rec["metrics"]["accuracy"] > 20          # chance is 10 %
    fam = rec["config"]["encoder"]["describe"]            # what the lead's encoder identity records
    assert fam["backbone"] == "torchvision:resnet18" and fam["weights"] == "r18.pt"
    assert fam["weights_hash"] == state_dict_hash(torch.load(r18_file, weights_only=True))
    assert fam["taps"] == ["layer3", "layer4"] and fam["input"]["input_size"] == 0
    assert [fam["input"]["normalize"]["mean"], fam["input"]["normalize"]["std"]] == IMAGENET
    assert "ResNet18_Weights" in fam["input"]["normalize"]["source"]
    assert MODELS.get("r18").source == "backbone"
    capsys.readouterr()
    assert main(argv) == 0                                  # same registration again: a no-op; all skipped
    assert f"0 records written, {len(recs)} already present" in capsys.readouterr().err


def test_taps_mapped_onto_the_paper_columns_fill_tables_1_and_4(tmp_path, r18_file, capsys):
    argv = ["run", "--models", "r18p", "--protocols", "mlp", "--dataset", "digits", "--seeds", "1",
            "--backbone", f"r18p=torchvision:resnet18:{r18_file},taps=layer3:conv+layer4:fc", "--quiet",
            "--set", "mlp.epochs=1", "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## Table 1" in out and "| r18p / conv " in out
    assert all(re.fullmatch(r"\d+\.\d\d\D*", cell) for cell in _md_row(out, "r18p")[1:])   # conv, fc: numbers
    rec = json.loads(next((tmp_path / "results/digits/records/r18p/mlp").glob("conv-*.json")).read_text())
    assert rec["config"]["encoder"]["describe"]["taps"] == ["layer3:conv", "layer4:fc"]
    enc = BackboneSpec("torchvision", "resnet18", str(r18_file), ("layer3:conv", "layer4"))()
    plain = BackboneSpec("torchvision", "resnet18", str(r18_file), ("layer3", "layer4"))()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = enc(x), plain(x)
    assert list(a) == ["conv", "layer4"] and torch.equal(a["conv"], b["layer3"])


@pytest.mark.parametrize("taps", [("layer3:conv", "layer4:conv"), ("layer3:bad/name",), ("layer3", "layer3:x")])
def test_bad_tap_names_are_config_errors(taps):
    with pytest.raises(ConfigError, match="backbone torchvision:resnet18"):
        BackboneSpec("torchvision", "resnet18", taps=taps)


def _reference_taps(enc, x: torch.Tensor, size: int, mean_std) -> dict[str, torch.Tensor]:
    """The same network run by hand: repeat channels, resize, [-1, 1] -> [0, 1], normalise, pool."""
    model = torchvision.models.resnet18(weights=None).eval()
    missing, _ = model.load_state_dict(enc.body.state_dict(), strict=False)
    assert all(k.startswith("fc.") for k in missing)
    x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x + 1) / 2
    x = (x - torch.tensor(mean_std[0]).view(1, 3, 1, 1)) / torch.tensor(mean_std[1]).view(1, 3, 1, 1)
    got = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: got.__setitem__(n, o.mean((2, 3))))
             for n in ("layer2", "layer4")]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


def test_input_adaptation_and_taps_match_the_network_by_hand():
    normalize = ((0.5, 0.4, 0.3), (0.2, 0.3, 0.4))
    torch.manual_seed(1)
    enc = BackboneSpec("torchvision", "resnet18", taps=("layer2", "layer4"), input_size=40, normalize=normalize)()
    x = torch.rand(3, 1, 24, 24) * 2 - 1                     # 1 channel, another size: both adapted
    with torch.no_grad():
        out = enc(x)
    ref = _reference_taps(enc, x, 40, normalize)
    assert list(out) == ["layer2", "layer4"] and out["layer2"].shape == (3, 128) and out["layer4"].shape == (3, 512)
    for k in out:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)
    d = enc.describe()["input"]
    assert d["input_size"] == 40 and "40x40" in d["resize"] and d["normalize"]["source"] == "given"
    assert d["normalize"]["mean"] == list(normalize[0])


def test_each_adaptation_has_its_own_feature_cache_identity():
    """Same weights, another adaptation: another encoder state-dict hash (the feature-cache key)."""
    def encoder_hash(**kw):
        torch.manual_seed(0)                                   # the same random weights every time
        enc = BackboneSpec("torchvision", "squeezenet1_1", **kw)()
        return enc.describe()["weights_hash"], state_dict_hash(enc.state_dict())
    hashes = [encoder_hash(**kw) for kw in ({}, {"pool": False}, {"normalize": "none"}, {"input_size": 64})]
    assert len({w for w, _ in hashes}) == 1 and len({e for _, e in hashes}) == 4


def test_unfit_or_unsafe_weights_are_one_line_errors(tmp_path):
    small = tmp_path / "small.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, small)
    with pytest.raises(CheckpointError, match="does not fit ResNet"):
        BackboneSpec("torchvision", "resnet18", str(small))()
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"obj": Path("x")}, unsafe)                     # a pickled object: refused by weights_only
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        BackboneSpec("torchvision", "resnet18", str(unsafe))()


@pytest.mark.parametrize("arg, words", [
    ("r18", "expects NAME=SOURCE:ARCH"),
    ("x=foo:resnet18", "source must be one of torchvision, timm"),
    ("x=torchvision:nosuchnet", "torchvision has no model 'nosuchnet'"),
    ("x=torchvision:resnet18:/nonexistent/r18.pt", "weights file not found"),
    ("x=torchvision:resnet18:IMAGENET1K_V1", "needs --download"),
    ("x=torchvision:resnet18,bogus=1", "bad config key '--backbone x.bogus'"),
    ("x=torchvision:resnet18,input_size=-3", "input_size must be >= 0"),
    ("x=torchvision:resnet18,normalize=zscore", "normalize must be one of"),
])
def test_bad_backbone_arguments(capsys, arg, words):
    assert words in _one_line_error(capsys, ["--backbone", arg, "list"])


def test_nothing_downloaded_without_download(monkeypatch):
    calls = []

    def fake_fetch(url, *a, **k):
        calls.append(url)
        raise ConnectionError("offline test")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_fetch)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_fetch)
    with pytest.raises(ConfigError, match="needs --download"):
        BackboneSpec("torchvision", "resnet18", "DEFAULT")()
    assert calls == []
    with pytest.raises(ConnectionError):                      # with --download: the published weights
        BackboneSpec("torchvision", "resnet18", "DEFAULT", download=True)()
    assert len(calls) == 1 and "resnet18" in calls[0]


def test_cli_options_and_python_api():
    name, spec, display = parse_backbone_arg("bb=torchvision:resnet18:w.pt,input_size=64,taps=layer1+layer3,"
                                             "normalize=none,pool=false,display=ResNet-18 (64 px)")
    assert (name, display) == ("bb", "ResNet-18 (64 px)")
    assert spec == BackboneSpec("torchvision", "resnet18", "w.pt", ("layer1", "layer3"), 64, "none", False)
    register_backbone("api-r18", "torchvision:resnet18", input_size=48, taps=["layer4"])
    register_backbone("api-r18", "torchvision:resnet18", input_size=48, taps=["layer4"])   # same: no-op
    with pytest.raises(RegistryError, match="duplicate model name 'api-r18'"):
        register_backbone("api-r18", "torchvision:resnet18", input_size=64)
    with pytest.raises(ConfigError, match="taps"):
        BackboneSpec("torchvision", "resnet18", taps=("nosuchnode",))()


def test_default_taps():
    model = torchvision.models.resnet18(weights=None)
    assert default_taps(model, "torchvision", 32) == ("layer3", "layer4")
    assert default_taps(model, "torchvision", 16) == ("layer2", "layer4")   # layer3 is 1x1 like layer4 there

    class Tokens(nn.Module):                                   # a ViT-like model: a patch stem, then tokens
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 4, 4)
            self.blocks = nn.Linear(8, 8)

        def forward(self, x):
            return self.blocks(self.stem(x).flatten(2).transpose(1, 2))
    with pytest.raises(ConfigError, match="works on tokens after 'stem'.*pass taps"):
        default_taps(Tokens(), "torchvision", 32)


def test_timm_missing_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)
    assert "pip install 'repeval[timm]'" in _one_line_error(capsys, ["--backbone", "t=timm:resnet18", "list"])


def test_timm_backbone():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    enc = BackboneSpec("timm", "resnet18")()
    with torch.no_grad():
        out = enc(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"layer3": (2, 256), "layer4": (2, 512)}
    d = enc.describe()
    assert d["backbone"] == "timm:resnet18" and d["weights"] is None and "pretrained_cfg" in d["input"]["normalize"]["source"]
