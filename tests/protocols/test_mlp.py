"""The classifier probe of Table 1 (protocols/mlp.py) against ground truths on synthetic, seeded features:
separable classes -> 100 %, random labels -> chance, standardised inputs, the convergence flag False on a
budget too small and True on enough, seeding, the default seed counts, and the one-pass training of
seeds and budgets: each seed's numbers as if trained alone, each budget's head as if trained alone,
each seed's randomness its own, a diverging seed named. One thread, CPU.
"""
from __future__ import annotations

import pytest
import torch

from repeval.plugin.protocol import ProtocolFailure
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


def test_seeds_trained_together_equal_each_seed_alone():
    """The runner's batched entry point (``mlp_probes``) trains the seeds in one pass (one batched
    first-layer product over their own minibatches, one Adam step): each seed's record equals the one
    it gets alone, and a call for seeds (1, 2) (a resumed run) equals (0, 1, 2)'s entries for them.
    Exact on CPU: the batched products compute each seed's slice as they compute it alone, and
    every reduction is per seed. Default dropout (masks drawn per seed) and standardisation."""
    from repeval.protocols.mlp import mlp_probes
    inp = split_blobs(600, 400, 16, 10, 0.5, seed=9)
    cfg = MLPConfig(epochs=4, batch_size=64)     # the half budget leaves the pass after epoch 2
    together = mlp_probes(inp, cfg, seeds=(0, 1, 2))
    assert together == [mlp_probe(inp, cfg, seed=s) for s in (0, 1, 2)]
    assert mlp_probes(inp, cfg, seeds=(1, 2)) == together[1:]
    assert len({r["final_loss"] for r in together}) == 3, together


@pytest.mark.parametrize("own", ["mlp-init", "mlp-shuffle", "mlp-dropout"])
def test_each_seed_draws_its_own_randomness(monkeypatch, own):
    """Different seeds give different probes through each of their three streams alone: with the
    other two made seed-independent (``derive_seed`` patched), seeds 0 and 1 of one call still train
    different probes, and seed 0 twice in one call trains identical ones (nothing is drawn per
    position in the call, nor shared by the call)."""
    import repeval.protocols.mlp as mlp
    real = mlp.derive_seed
    monkeypatch.setattr(mlp, "derive_seed", lambda seed, purpose, *rest: real(seed if purpose == own else 0,
                                                                            purpose, *rest))
    inp = split_blobs(300, 100, 16, 5, 1.0, seed=4)
    fits = mlp.train_seeds(inp.train.features, inp.train.labels, inp.test.features, inp.test.labels, 5,
                           [MLPConfig(epochs=2, batch_size=64)], seeds=(0, 0, 1))
    w = [f[0].model.state_dict() for f in fits]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    diff = {k: float((w[0][k].float() - w[2][k].float()).abs().max()) for k in w[0] if k != "2.num_batches_tracked"}
    assert min(diff.values()) > 1e-6, diff      # identical streams would give 0 (the pair above)
    assert fits[0][0].final_loss != fits[2][0].final_loss


def test_non_finite_loss_names_the_seed():
    """A NaN training row that only seed 0's first epoch draws (each epoch drops the rows after its
    last full batch) fails the call, naming seed 0 and not seed 1."""
    from repeval.protocols.mlp import train_seeds
    from repeval.seeding import derive_seed, generator
    inp = split_blobs(100, 50, 8, 5, 1.0, seed=1)
    drawn = [set(torch.randperm(100, generator=generator(derive_seed(s, "mlp-shuffle", 0)))[:64].tolist())
             for s in (0, 1)]
    row = min(drawn[0] - drawn[1])
    x = inp.train.features.clone()
    x[row] = float("nan")
    with pytest.raises(ProtocolFailure, match=r"epoch 1 for seed\(s\) 0: "):
        train_seeds(x, inp.train.labels, inp.test.features, inp.test.labels, 5,
                    [MLPConfig(epochs=1, batch_size=64, standardize=False)], seeds=(0, 1))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_budgets_trained_in_one_pass_equal_separate_runs(dropout):
    """The budget-halving check shares each step's first-layer product, minibatch and dropout mask
    with the full run (protocols/mlp.py `train_seeds`): each head, its batch-norm running statistics
    included, ends as if trained alone (not to the bit: the wider product rounds differently). (The
    first layer's bias is left out of the weight comparison: batch norm cancels it, its gradient is
    rounding noise that Adam amplifies, and the running mean follows it; the logits compare it.)"""
    from repeval.protocols.mlp import half_budget, train_probes
    inp = split_blobs(600, 300, 24, 5, 1.0, seed=3)
    args = (inp.train.features, inp.train.labels, inp.test.features, inp.test.labels, 5)
    cfg = MLPConfig(epochs=4, batch_size=64, dropout=dropout)
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
