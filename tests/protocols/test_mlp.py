"""The classifier probe of Table 1 (protocols/mlp.py) against ground truths on synthetic, seeded features:
separable classes -> 100 %, random labels -> chance, standardised inputs, the convergence flag False on a
budget too small and True on enough, seeding, the default seed counts. One thread, CPU.
"""
from __future__ import annotations

import pytest
import torch

from repeval.protocols.mlp import MLPConfig, mlp_probe
from repeval.registry import PROTOCOLS
from tests.helpers import as_input, random_label_input, split_blobs

pytestmark = pytest.mark.usefixtures("one_thread")


FAST_MLP = MLPConfig(epochs=12, batch_size=64)


def test_default_seed_counts_probe_three_svm_five():
    assert PROTOCOLS.get("mlp").seeds == 3 and PROTOCOLS.get("svm").seeds == 5


def test_mlp_separable_100_and_random_labels_at_chance():
    r = mlp_probe(split_blobs(1000, 1000, 32, 10, 5.0, seed=5), FAST_MLP, seed=0)
    assert r["accuracy"] == 100.0 and r["train_accuracy"] == 100.0 and r["converged"], r
    r = mlp_probe(random_label_input(1000, 2000, 32, seed=6), FAST_MLP, seed=0)
    assert abs(r["accuracy"] - 10.0) < 3.0, r


def test_mlp_standardises_inputs_with_training_statistics():
    """A huge per-column offset and scale would stall the unstandardised probe; standardised, the
    probe sees the same problem."""
    inp = split_blobs(1000, 1000, 32, 10, 1.0, seed=7)
    scale = torch.logspace(-3, 3, 32)
    far = as_input(torch.cat([inp.train.features, inp.test.features]) * scale + 1e4,
                   torch.cat([inp.train.labels, inp.test.labels]), 1000)
    cfg = MLPConfig(epochs=4, batch_size=64)
    near, std = mlp_probe(inp, cfg, seed=0), mlp_probe(far, cfg, seed=0)
    raw = mlp_probe(far, MLPConfig(epochs=4, batch_size=64, standardize=False), seed=0)
    assert abs(near["accuracy"] - std["accuracy"]) < 1.0 and raw["accuracy"] < near["accuracy"] - 20, (near, std, raw)


def test_mlp_convergence_flag_false_on_a_short_budget_true_on_enough():
    inp = split_blobs(1000, 1000, 32, 10, 1.0, seed=8)
    short = mlp_probe(inp, MLPConfig(epochs=2, batch_size=64, lr=3e-4), seed=0)
    enough = mlp_probe(inp, MLPConfig(epochs=16, batch_size=64), seed=0)
    assert not short["converged"] and short["gain_over_half_budget"] > 0.5, short
    assert enough["converged"] and enough["gain_over_half_budget"] <= 0.5, enough
    for r in (short, enough):   # the check is a separate run at half the budget, not a window of this one
        assert r["gain_over_half_budget"] == r["accuracy"] - r["accuracy_half_budget"], r
    assert enough["accuracy"] > short["accuracy"]
    one = mlp_probe(inp, MLPConfig(epochs=1, batch_size=64), seed=0)   # half of one epoch: the untrained head
    assert one["accuracy_half_budget"] < 40 < one["accuracy"] and not one["converged"], one


def test_mlp_same_seed_same_numbers_other_seed_other_numbers():
    inp = split_blobs(600, 400, 16, 10, 0.5, seed=9)
    cfg = MLPConfig(epochs=3, batch_size=64)
    a, b, c = (mlp_probe(inp, cfg, seed=s) for s in (0, 0, 1))
    assert a == b and a != c
