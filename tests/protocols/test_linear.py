"""The linear probe (protocols/linear.py; multinomial logistic regression, L-BFGS), an extra protocol of
Table X, against ground truths: the analytic gradient against autograd, separable data -> 100 %, random
labels -> chance, seeding, the iteration cap. (The separable and random_labels fixtures: tests/conftest.py.)"""
from __future__ import annotations

import pytest
import torch

from repeval.protocols.linear import LinearConfig, linear_protocol, loss_grad
from tests.helpers import BLOB_CLASSES, blob_task


def test_linear_gradient_matches_autograd():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randint(0, 4, (50,), generator=g)
    w_row = torch.rand(50, generator=g, dtype=torch.float64)
    w_row[::5] = 0                                          # rows left out (the validation split)
    w_row /= w_row.sum()
    W = torch.randn(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    loss, dW, db = loss_grad(x, y, w_row, W.detach(), b.detach(), 0.3)
    ref = -(w_row * torch.log_softmax(x @ W.T + b, 1)[torch.arange(50), y]).sum() + 0.15 * W.pow(2).sum()
    ref.backward()
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert torch.allclose(dW, W.grad, atol=1e-12) and torch.allclose(db, b.grad, atol=1e-12)


def test_linear_separable_is_perfect_and_random_labels_are_chance(separable, random_labels):
    cfg = LinearConfig(weight_decays=(1e-4, 1e-2), max_iter=100)
    sep = linear_protocol(separable, cfg, seed=0)
    assert sep["accuracy"] == 100.0 and sep["train_accuracy"] == 100.0 and sep["converged"] is True
    rnd = linear_protocol(random_labels, cfg, seed=0)
    assert abs(rnd["accuracy"] - 100.0 / BLOB_CLASSES) < 4.0, rnd
    assert rnd["weight_decay"] in (1e-4, 1e-2) and "val_accuracy_wd0.01" in rnd


def test_linear_path_stops_after_patience_and_chunks_do_not_change_the_gradient(random_labels):
    """Random labels: the largest decay is best, so the path stops after the next one; with
    path_patience 0 every decay is fitted. The one-pass gradient does not depend on the chunk size."""
    grid = (1e-6, 1e-5, 1e-4, 1e-2, 1.0)
    short = linear_protocol(random_labels, LinearConfig(weight_decays=grid, max_iter=50), seed=0)
    full = linear_protocol(random_labels, LinearConfig(weight_decays=grid, max_iter=50, path_patience=0), seed=0)
    fitted = [k for k in short if k.startswith("val_accuracy_wd")]
    assert full["path_fits"] == 5 and short["path_fits"] == len(fitted) < 5, (short, full)
    best = max(full[f"val_accuracy_wd{wd:g}"] for wd in grid)
    assert short["val_accuracy"] <= best
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 9, generator=g, dtype=torch.float64), torch.randint(0, 3, (300,), generator=g)
    w, W, b = torch.full((300,), 1 / 300, dtype=torch.float64), torch.randn(3, 9, generator=g, dtype=torch.float64), \
        torch.randn(3, generator=g, dtype=torch.float64)
    one, many = loss_grad(x, y, w, W, b, 0.1, chunk=300), loss_grad(x, y, w, W, b, 0.1, chunk=7)
    assert all(torch.allclose(a, c, atol=1e-12) for a, c in zip(one, many))


def test_linear_is_seeded_and_reports_an_iteration_cap(separable):
    cfg = LinearConfig(weight_decays=(1e-3,), max_iter=40)
    a, b = linear_protocol(separable, cfg, seed=5), linear_protocol(separable, cfg, seed=5)
    assert a == b
    capped = linear_protocol(blob_task(sep=0.3), LinearConfig(weight_decays=(1e-6,), max_iter=2), seed=5)
    assert capped["converged"] is False and capped["grad_max"] > 1e-5 and capped["iterations"] == 4  # 2 + refit 2
