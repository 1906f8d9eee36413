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


def test_budgets_trained_in_one_pass_equal_separate_runs():
    """The budget-halving check shares each step's first-layer product with the full run
    (protocols/mlp.py `_pair_forward`): without dropout (whose masks are drawn for the wide layer at
    once) each head, its batch-norm running statistics included, ends as if trained alone. (The
    first layer's bias is left out of the weight comparison: batch norm cancels it, its gradient is
    rounding noise that Adam amplifies, and the running mean follows it; the logits compare it.)"""
    from repeval.protocols.mlp import half_budget, train_probes
    inp = split_blobs(600, 300, 24, 5, 1.0, seed=3)
    args = (inp.train.features, inp.train.labels, inp.test.features, inp.test.labels, 5)
    cfg = MLPConfig(epochs=4, batch_size=64, dropout=0.0)
    full, half = train_probes(*args, [cfg, half_budget(cfg)], seed=2)
    (alone,), (half_alone,) = train_probes(*args, [cfg], seed=2), train_probes(*args, [half_budget(cfg)], seed=2)
    for a, b in ((full, alone), (half, half_alone)):
        sa, sb = a.model.state_dict(), b.model.state_dict()
        keys = [k for k in sa if k not in ("0.bias", "2.running_mean")]
        assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-4) for k in keys), \
            {k: float((sa[k].float() - sb[k].float()).abs().max()) for k in keys}
        with torch.no_grad():
            za = a.model.eval()((inp.test.features - a.mean) / a.std)
            zb = b.model.eval()((inp.test.features - b.mean) / b.std)
        assert torch.allclose(za, zb, atol=1e-3), float((za - zb).abs().max())
        assert a.test_curve[max(a.test_curve)] == pytest.approx(b.test_curve[max(b.test_curve)], abs=0.5)
