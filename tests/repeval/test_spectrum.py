"""The feature-spectrum diagnostic (repeval/estimators/spectrum.py) on features of known rank, its table, and a
collapsed toy encoder flagged end to end."""
import pytest
import torch
from torch import nn

import repeval
from repeval.cli import main
from repeval.registry import MODELS
from repeval.estimators.spectrum import COLLAPSED_PR, collapsed, spectrum
from repeval.report.tables.spectrum import format_collapsed, render_spectrum, spectrum_table
from tests.helpers import read_records


def _gaussian(n: int, d: int, rank: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.linalg.qr(
        torch.randn(d, rank, generator=g, dtype=torch.float64))[0].T


@pytest.mark.parametrize("rank", [1, 4, 16])
def test_isotropic_rank_k_features_have_participation_ratio_near_k(rank):
    s = spectrum(_gaussian(4000, 64, rank))
    assert s["participation_ratio"] <= rank + 1e-6
    assert s["participation_ratio"] == pytest.approx(rank, rel=0.15)
    assert s["effective_rank"] == pytest.approx(rank, rel=0.1)
    assert s["dim"] == 64 and s["n"] == 2048 and s["dead_fraction"] == 0.0


def test_dead_units_and_a_dominant_direction():
    x = _gaussian(3000, 32, 32)
    x[:, :24] = 0.0                               # 24 ReLU units that never fire
    assert spectrum(x)["dead_fraction"] == pytest.approx(24 / 32)
    assert collapsed(spectrum(x))
    y = _gaussian(3000, 32, 32)
    y[:, 0] *= 100.0                              # one direction carries almost all the variance
    assert spectrum(y)["participation_ratio"] < 1.1 and collapsed(spectrum(y))
    assert not collapsed(spectrum(_gaussian(3000, 32, 32)))
    assert spectrum(torch.zeros(10, 5))["participation_ratio"] == 0.0


def test_subset_is_spread_through_a_sorted_split():
    x = torch.cat([torch.zeros(3000, 8), torch.randn(3000, 8, generator=torch.Generator().manual_seed(0))])
    assert spectrum(x)["participation_ratio"] > 1.0       # the first 2,048 rows alone are all zeros


class _Collapsed(nn.Module):
    """A toy encoder whose every tap is one direction: x's mean intensity times a fixed vector."""

    def __init__(self):
        super().__init__()
        self.register_buffer("v", torch.linspace(1.0, 2.0, 16))

    def forward(self, x):
        m = x.mean((1, 2, 3), keepdim=False)[:, None]
        return {"emb": m * self.v}


def test_a_collapsed_toy_encoder_is_flagged(tmp_path, capsys):
    saved = dict(MODELS._items)
    try:
        repeval.register_encoder("toy-collapsed", _Collapsed)
        assert main(["run", "--models", "toy-collapsed,random", "--protocols", "knn", "--quiet", "--no-table",
                     "--workdir", str(tmp_path / "w"), "--results", str(tmp_path / "r")]) == 0
    finally:
        MODELS._items.clear()
        MODELS._items.update(saved)
    recs = list(read_records(tmp_path / "r").values())
    assert all(set(r["spectrum"]) >= {"participation_ratio", "effective_rank", "dead_fraction"} for r in recs)
    df = spectrum_table(recs, "digits")
    flagged = {(m, t) for m, t, c in zip(df["model"], df["tap"], df["collapsed"]) if c}
    assert flagged == {("toy-collapsed", "emb")}          # random init's taps are not collapsed
    assert df.query("model == 'toy-collapsed' and tap == 'emb'")["participation_ratio"].iloc[0] < COLLAPSED_PR
    assert "⚠" in render_spectrum(df)
    assert any("has collapsed features (emb PR 1.0" in line for line in format_collapsed(df))
    capsys.readouterr()
    assert main(["table", "--results", str(tmp_path / "r"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "has collapsed features" in out and (tmp_path / "r/digits/spectrum.md").is_file()
