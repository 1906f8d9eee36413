import pytest
import torch

from repeval.config import TrainConfig
from repeval.registry import MODELS
from repeval.engine.train import DivergenceError, Family, train


def _data(n=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def _ae(epochs):
    torch.manual_seed(0)
    return MODELS.get("ae").build(TrainConfig(epochs=epochs, batch_size=32), 10, 3)


def test_resume_inside_training_gives_identical_weights(tmp_path):
    x, y = _data()
    full = _ae(3)
    h_full = train(full, x, y, tmp_path / "full.pt")

    part = _ae(1)
    train(part, x, y, tmp_path / "part.pt")          # "killed" after epoch 1
    resumed = _ae(3)                                   # a fresh process rebuilds the family...
    h_res = train(resumed, x, y, tmp_path / "part.pt")  # ...and resumes from the epoch-1 checkpoint
    assert h_res == h_full and len(h_full) == 3
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_same_seed_same_weights_different_seed_differs(tmp_path):
    x, y = _data()
    a, b = _ae(1), _ae(1)
    train(a, x, y, tmp_path / "a.pt")
    train(b, x, y, tmp_path / "b.pt")
    assert torch.equal(a.encoder.out.weight, b.encoder.out.weight)
    torch.manual_seed(0)
    c = MODELS.get("ae").build(TrainConfig(epochs=1, batch_size=32, seed=1), 10, 3)
    train(c, x, y, tmp_path / "c.pt")
    assert not torch.equal(a.encoder.out.weight, c.encoder.out.weight)


def test_loss_decreases_over_epochs(tmp_path):
    x, y = _data()
    hist = train(_ae(4), x, y, tmp_path / "ae.pt")
    assert hist[-1]["mse"] < hist[0]["mse"]


class Exploding(Family):
    def train_step(self, x, labels, index, opt):
        return {"loss": torch.tensor(float("nan"))}


def test_non_finite_loss_raises_with_location(tmp_path):
    x, y = _data(64)
    with pytest.raises(DivergenceError, match=r"non-finite loss 'loss' = nan in boom at epoch 1 step 1"):
        train(Exploding(TrainConfig(epochs=2, batch_size=32)), x, y, tmp_path / "e.pt", name="boom")
    assert not (tmp_path / "e.pt").exists()
