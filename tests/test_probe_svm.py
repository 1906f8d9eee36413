"""Ground truth for the classification protocols (Table 1's probe, Table 4's linear SVM) on
synthetic, seeded features: separable classes -> 100 %, random labels -> chance, the convergence
flags False on a budget too small and True on enough, the SVM's degenerate flag on a code with no
signal, the default seed counts, and the shared standardisation helper. One thread, CPU.
"""
from __future__ import annotations

import pytest
import torch

from repeval.protocol import ProtocolInput, Split, zscore, zscore_stats
from repeval.protocols.mlp import MLPConfig, mlp_probe
from repeval.protocols.svm import SVMConfig, hinge_loss_grad, svm_protocol, svm_select_and_fit
from repeval.registry import PROTOCOLS
from repeval.seeding import derive_seed, generator

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n, d, k, scale, seed, noise_dims=0):
    """k Gaussian classes with centres scale * N(0, I) in d dims (+ pure-noise dims)."""
    g = generator(seed)
    centres = torch.randn(k, d, generator=g) * scale
    y = torch.randint(k, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    if noise_dims:
        x = torch.cat([x, torch.randn(n, noise_dims, generator=g)], 1)
    return x, y


def as_input(x, y, n_tr, k=10) -> ProtocolInput:
    return ProtocolInput("conv", Split(x[:n_tr], y[:n_tr]), Split(x[n_tr:], y[n_tr:]), k)


def split_blobs(n_tr, n_te, d, k, scale, seed, noise_dims=0):
    return as_input(*blobs(n_tr + n_te, d, k, scale, seed, noise_dims), n_tr, k)


def random_labels(n_tr, n_te, d, seed):
    g = generator(seed)
    return as_input(torch.randn(n_tr + n_te, d, generator=g), torch.randint(10, (n_tr + n_te,), generator=g), n_tr)


FAST_SVM = SVMConfig(epochs=5, c_grid=(0.01, 0.1, 1.0), min_steps=300, batch_size=256, tol=0.02)
FAST_MLP = MLPConfig(epochs=12, batch_size=64)


def test_default_seed_counts_probe_three_svm_five():
    assert PROTOCOLS.get("mlp").seeds == 3 and PROTOCOLS.get("svm").seeds == 5


# ----------------------------------------------------------------------------- standardisation

def test_zscore_stats_match_torch_and_do_not_depend_on_the_chunk():
    g = generator(0)
    x = torch.randn(1000, 7, generator=g) * torch.tensor([1.0, 2, 3, 1e3, 1e-3, 5, 1]) + 100.0
    x[:, 6] = 4.25                                                         # a constant column
    mu, sd = zscore_stats(x)
    ref = x.double().std(0).float()
    assert torch.equal(mu, x.mean(0)) and torch.allclose(sd[:6], ref[:6], rtol=1e-5) and sd[6] == 1
    mu7, sd7 = zscore_stats(x, chunk=7)
    assert torch.equal(mu7, mu) and torch.allclose(sd7, sd, rtol=1e-6)
    z, = zscore(x)
    keep = [0, 1, 2, 3, 5]                     # column 4 (std 1e-3 at 100) is below float32 resolution
    assert torch.allclose(z[:, keep].mean(0), torch.zeros(5), atol=1e-4) and torch.all(z[:, 6] == 0)
    assert torch.allclose(z[:, keep].std(0), torch.ones(5), atol=1e-4)


# ----------------------------------------------------------------------------- MLP probe

def test_mlp_separable_100_and_random_labels_at_chance():
    r = mlp_probe(split_blobs(1000, 1000, 32, 10, 5.0, seed=5), FAST_MLP, seed=0)
    assert r["accuracy"] == 100.0 and r["train_accuracy"] == 100.0 and r["converged"], r
    r = mlp_probe(random_labels(1000, 2000, 32, seed=6), FAST_MLP, seed=0)
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


def test_mlp_same_seed_same_numbers_other_seed_other_numbers():
    inp = split_blobs(600, 400, 16, 10, 0.5, seed=9)
    cfg = MLPConfig(epochs=3, batch_size=64)
    a, b, c = (mlp_probe(inp, cfg, seed=s) for s in (0, 0, 1))
    assert a == b and a != c


# ----------------------------------------------------------------------------- SVM

def test_hinge_gradients_match_autograd():
    g = generator(0)
    s = torch.randn(16, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(5, (16,), generator=g)
    onehot = torch.nn.functional.one_hot(y, 5).double()
    for kind in ("crammer_singer", "ovr"):
        for squared in (False, True):
            loss, grad = hinge_loss_grad(s.detach(), onehot, kind, squared)
            if kind == "crammer_singer":
                terms = (s + 1 - onehot[:, None]).max(2).values - (s * onehot[:, None]).sum(2)
            else:
                terms = (1 - (2 * onehot[:, None] - 1) * s).clamp_min(0)
            terms = terms ** 2 if squared else terms
            ref = terms.sum(0) if kind == "crammer_singer" else terms.sum((0, 2))
            (auto,) = torch.autograd.grad(ref.sum(), s)
            assert torch.allclose(loss, ref.detach()) and torch.allclose(grad, auto), (kind, squared)


def test_svm_separable_100_converged_not_degenerate():
    r = svm_protocol(split_blobs(1500, 1000, 32, 10, 5.0, seed=1), FAST_SVM, seed=0)
    assert r["accuracy"] == 100.0 and r["converged"] and not r["degenerate"], r
    assert r["objective_rel_change"] <= FAST_SVM.tol and r["steps"] == 300 * r["cycles"] and r["cycles"] >= 1


def test_svm_random_labels_at_chance_and_degenerate():
    """No signal: the hinge optimum is W = 0 (every C of the grid); the flag says so."""
    r = svm_protocol(random_labels(1500, 2000, 32, seed=2), FAST_SVM, seed=0)
    assert abs(r["accuracy"] - 10.0) < 3.0, r
    assert r["degenerate"] and r["weight_norm"] < FAST_SVM.degenerate_norm and r["converged"], r


def test_svm_convergence_flag_false_on_a_short_budget_true_on_enough():
    inp = split_blobs(1500, 500, 24, 10, 0.5, seed=4, noise_dims=40)
    base = dict(c_grid=(0.1,), batch_size=256, refit=False, tol=0.02)
    short = svm_protocol(inp, SVMConfig(epochs=1, max_cycles=1, lr=1e-4, **base), seed=0)
    enough = svm_protocol(inp, SVMConfig(epochs=10, max_cycles=6, **base), seed=0)
    assert not short["converged"] and short["objective_rel_change"] > 0.02 and short["cycles"] == 1, short
    assert enough["converged"] and enough["objective_rel_change"] <= 0.02 and enough["cycles"] >= 2, enough
    assert enough["objective"] < short["objective"] and enough["accuracy"] > short["accuracy"]


def test_svm_same_seed_same_numbers_other_seed_other_split():
    inp = split_blobs(800, 400, 16, 10, 0.4, seed=3)
    cfg = SVMConfig(epochs=2, c_grid=(0.01, 1.0), min_steps=100, batch_size=128, max_cycles=2)
    a, b, c = (svm_protocol(inp, cfg, seed=s) for s in (0, 0, 1))
    assert a == b
    assert a != c


def test_svm_at_least_as_accurate_as_converged_sklearn():
    """Crammer-Singer LinearSVC (liblinear, tol 1e-5, converged) with C chosen on the same
    validation split as ours; overlapping classes with noise dimensions, so C matters."""
    from sklearn.svm import LinearSVC

    inp = split_blobs(2000, 2000, 24, 10, 0.5, seed=4, noise_dims=40)
    cfg = SVMConfig(epochs=10, c_grid=(0.001, 0.01, 0.1), min_steps=1000, batch_size=256, max_cycles=2)
    ours = svm_select_and_fit(inp.train.features, inp.train.labels, inp.test.features, inp.test.labels, 10,
                              cfg, seed=0)
    # the reference: same standardisation, same validation split, same grid
    x, y = inp.train.features, inp.train.labels
    mu, sd = x.mean(0), x.std(0)
    xs, xts = ((x - mu) / sd).numpy(), ((inp.test.features - mu) / sd).numpy()
    n_val = round(0.1 * len(y))
    perm = torch.randperm(len(y), generator=generator(derive_seed(0, "svm-val"))).numpy()
    val, fit = perm[:n_val], perm[n_val:]
    best = max(cfg.c_grid, key=lambda c: (LinearSVC(C=c, multi_class="crammer_singer", tol=1e-5, max_iter=50000)
                                          .fit(xs[fit], y[fit]).score(xs[val], y[val]), -c))
    ref = LinearSVC(C=best, multi_class="crammer_singer", tol=1e-5, max_iter=50000).fit(xs, y.numpy())
    ref_acc = 100.0 * ref.score(xts, inp.test.labels.numpy())
    assert ours["accuracy"] >= ref_acc - 0.5, (ours, ref_acc, best)
