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
    assert rnd["weight_decay"] in (1e-4, 1e-2) and set(rnd) >= {"val_accuracy_wd0.0001", "val_accuracy_wd0.01"}


def test_linear_is_seeded_and_reports_an_iteration_cap(separable):
    cfg = LinearConfig(weight_decays=(1e-3,), max_iter=40)
    a, b = linear_protocol(separable, cfg, seed=5), linear_protocol(separable, cfg, seed=5)
    assert a == b
    capped = linear_protocol(blob_task(sep=0.3), LinearConfig(weight_decays=(1e-6,), max_iter=2), seed=5)
    assert capped["converged"] is False and capped["grad_max"] > 1e-5 and capped["iterations"] == 4  # 2 + refit 2
