"""Weighted kNN (protocols/knn.py; Wu et al. 2018), an extra protocol of Table X, against ground truths:
separable data -> 100 %, random labels -> chance, a hand-checked weighted vote, chunks against a dense
reference. (The separable and random_labels fixtures: tests/conftest.py.)"""
from __future__ import annotations

import torch

from repeval.protocols.knn import KNNConfig, knn_predict, knn_protocol
from repeval.registry import PROTOCOLS
from tests.helpers import BLOB_CLASSES


def test_registered_for_table_x_only():
    for name, metrics in (("knn", ("accuracy_k20", "accuracy_k200")), ("linear", ("accuracy",))):
        spec = PROTOCOLS.get(name)
        assert spec.taps == "all" and spec.report.curve and spec.report.metrics == metrics
        assert {c.table for c in spec.report.columns} == {"X"} and {c.protocol for c in spec.report.columns} == {name}


def test_knn_separable_is_perfect_and_random_labels_are_chance(separable, random_labels):
    assert knn_protocol(separable, KNNConfig()) == {"accuracy_k20": 100.0, "accuracy_k200": 100.0}
    chance = knn_protocol(random_labels, KNNConfig())
    assert all(abs(v - 100.0 / BLOB_CLASSES) < 4.0 for v in chance.values()), chance


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
