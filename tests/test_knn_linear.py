"""The extra protocols of Table X: weighted kNN (Wu et al. 2018) and the linear probe (multinomial
logistic regression, L-BFGS), against ground truths: separable data -> 100 %, random labels -> chance,
a hand-checked weighted vote, the analytic gradient against autograd."""
from __future__ import annotations

import pytest
import torch

from repeval.protocol import ProtocolInput, Split
from repeval.protocols.knn import KNNConfig, knn_predict, knn_protocol
from repeval.protocols.linear import LinearConfig, linear_protocol, loss_grad
from repeval.registry import PROTOCOLS

C = 10


def blobs(n: int, d: int, sep: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of C Gaussian classes, class means ``sep`` x N(0, I) apart (sep 0: labels independent of x)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    means = sep * torch.randn(C, d, generator=g)
    return means[y] + torch.randn(n, d, generator=g), y


def task(sep: float, n_train: int = 1500, n_test: int = 2000, d: int = 24) -> ProtocolInput:
    x, y = blobs(n_train + n_test, d, sep, seed=1)
    return ProtocolInput("y", Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:]), C)


@pytest.fixture(scope="module")
def separable():
    return task(sep=6.0)


@pytest.fixture(scope="module")
def random_labels():
    return task(sep=0.0)


def test_registered_for_table_x_only():
    for name, metrics in (("knn", ("accuracy_k20", "accuracy_k200")), ("linear", ("accuracy",))):
        spec = PROTOCOLS.get(name)
        assert spec.taps == "all" and spec.report.curve and spec.report.metrics == metrics
        assert {c.table for c in spec.report.columns} == {"X"} and {c.protocol for c in spec.report.columns} == {name}


# ---------------------------------------------------------------------------------------------- kNN

def test_knn_separable_is_perfect_and_random_labels_are_chance(separable, random_labels):
    assert knn_protocol(separable, KNNConfig()) == {"accuracy_k20": 100.0, "accuracy_k200": 100.0}
    chance = knn_protocol(random_labels, KNNConfig())
    assert all(abs(v - 100.0 / C) < 4.0 for v in chance.values()), chance


def test_knn_votes_are_weighted_by_exp_cosine_over_temperature():
    # one class-1 neighbour at cosine 1 against two class-0 neighbours at cosine 0.5 (k = 3):
    # exp(1 / 0.07) = 1.6e6 > 2 exp(0.5 / 0.07) = 2.5e3, so class 1 wins; at tau = 100 the weights are
    # nearly equal and the two class-0 votes win. A far class-2 point is never among the 3 nearest.
    train = torch.tensor([[1.0, 0.0], [0.5, 0.75 ** 0.5], [0.5, -(0.75 ** 0.5)], [-1.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 2])
    test = torch.tensor([[3.0, 0.0]])                      # norm 3: only the direction counts
    assert knn_predict(train * 7.0, labels, test, 3, (3,), 0.07)[3].tolist() == [1]
    assert knn_predict(train, labels, test, 3, (3,), 100.0)[3].tolist() == [0]
    assert knn_predict(train, labels, test, 3, (1, 50), 0.07)[50].tolist() == [1]   # k > N: all neighbours


def test_knn_chunks_match_a_dense_reference_and_ignore_feature_scale():
    g = torch.Generator().manual_seed(3)
    xtr, xte = torch.randn(300, 16, generator=g), torch.randn(77, 16, generator=g)
    ytr = torch.randint(0, 5, (300,), generator=g)
    # dense float64 reference: all similarities at once, top-k, exp(s / tau) votes
    s = torch.nn.functional.normalize(xte.double(), dim=1) @ torch.nn.functional.normalize(xtr.double(), dim=1).T
    top, idx = s.topk(20, dim=1)
    ref = torch.zeros(77, 5, dtype=torch.float64).scatter_add_(1, ytr[idx], (top / 0.07).exp()).argmax(1)
    scaled = xtr * torch.rand(300, 1, generator=g).add(0.1) * 10           # per-row scale: no effect
    for chunk in (1, 16, 77, 1000):
        assert torch.equal(knn_predict(scaled, ytr, xte, 5, (20,), 0.07, chunk)[20], ref), chunk


# ---------------------------------------------------------------------------------------------- linear

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
    assert abs(rnd["accuracy"] - 100.0 / C) < 4.0, rnd
    assert rnd["weight_decay"] in (1e-4, 1e-2) and set(rnd) >= {"val_accuracy_wd0.0001", "val_accuracy_wd0.01"}


def test_linear_is_seeded_and_reports_an_iteration_cap(separable):
    cfg = LinearConfig(weight_decays=(1e-3,), max_iter=40)
    a, b = linear_protocol(separable, cfg, seed=5), linear_protocol(separable, cfg, seed=5)
    assert a == b
    capped = linear_protocol(task(sep=0.3), LinearConfig(weight_decays=(1e-6,), max_iter=2), seed=5)
    assert capped["converged"] is False and capped["grad_max"] > 1e-5 and capped["iterations"] == 4  # 2 + refit 2
