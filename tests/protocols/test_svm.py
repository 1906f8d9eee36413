"""The linear SVM of Table 4 (protocols/svm.py) against ground truths on synthetic, seeded features:
separable classes -> 100 %, random labels -> chance, the convergence flags False on a budget too small and
True on enough, the degenerate flag on a code with no signal, seeding, converged sklearn as a reference.
One thread, CPU.
"""
from __future__ import annotations

import pytest
import torch

from repeval.protocols.svm import SVMConfig, hinge_loss_grad, svm_protocol, svm_select_and_fit
from repeval.seeding import derive_seed, generator
from tests.helpers import random_label_input, split_blobs

pytestmark = pytest.mark.usefixtures("one_thread")


FAST_SVM = SVMConfig(epochs=5, c_grid=(0.01, 0.1, 1.0), min_steps=300, batch_size=256, tol=0.02)


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
    r = svm_protocol(random_label_input(1500, 2000, 32, seed=2), FAST_SVM, seed=0)
    assert abs(r["accuracy"] - 10.0) < 3.0, r
    assert r["degenerate"] and r["weight_norm"] < FAST_SVM.degenerate_norm and r["converged"], r


def test_svm_convergence_flag_false_on_a_short_budget_true_on_enough():
    inp = split_blobs(1500, 500, 24, 10, 0.5, seed=4, noise_dims=40)
    base = dict(c_grid=(0.1,), batch_size=256, refit=False, tol=0.02)
    short = svm_protocol(inp, SVMConfig(epochs=1, max_cycles=1, lr=1e-4, **base), seed=0)
    enough = svm_protocol(inp, SVMConfig(epochs=10, max_cycles=6, **base), seed=0)
    assert not short["converged"] and short["objective_rel_change"] > 0.02 and short["cycles"] == 1, short
    assert enough["converged"] and enough["objective_rel_change"] <= 0.02 and enough["cycles"] >= 2, enough
    assert enough["objective"] < short["objective"]   # (test accuracy need not rise: stopping early regularises)


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


def test_svm_seeds_together_equal_each_alone():
    """The batched call (one selection product for every seed) gives each seed the record it gets
    alone, so a resumed run that owes only some seeds writes the same numbers."""
    from repeval.protocols.svm import svm_seeds

    inp = split_blobs(900, 300, 16, 10, 0.6, seed=5, noise_dims=8)
    cfg = SVMConfig(epochs=2, c_grid=(0.01, 0.1, 1.0), min_steps=60, batch_size=128, max_cycles=3, tol=0.01)
    together = svm_seeds(inp, cfg, seeds=(0, 1, 2))
    alone = [svm_protocol(inp, cfg, seed=s) for s in (0, 1, 2)]
    pair = svm_seeds(inp, cfg, seeds=(2, 1))
    for t, a in zip(together, alone):
        assert t.keys() == a.keys()
        for k in t:
            assert t[k] == pytest.approx(a[k], rel=1e-4, abs=1e-4), k
    assert pair[0] == pytest.approx(together[2], rel=1e-4, abs=1e-4) and pair[1] == pytest.approx(together[1], rel=1e-4, abs=1e-4)
    assert together[0] != together[1]      # the seeds draw other validation splits and refit orders


def test_svm_problems_stop_independently():
    """A problem that converges early stops (its weights no longer change) while another goes on."""
    from repeval.protocols.svm import Problem, fit_linear_svms

    inp = split_blobs(600, 10, 12, 4, 0.8, seed=6, noise_dims=4)
    x, y = inp.train.features, inp.train.labels
    opts = dict(epochs=1, batch_size=100, min_steps=60, tol=0.01, max_cycles=6, seed=3, lr=1e-2)
    easy, hard = Problem((1e-3,)), Problem((10.0,))
    both = fit_linear_svms(x, y, 4, [easy, hard], **opts)
    solo = [fit_linear_svms(x, y, 4, [p], **opts)[0] for p in (easy, hard)]
    assert both[0].cycles < both[1].cycles, (both[0].cycles, both[1].cycles)
    for b, s in zip(both, solo):
        assert b.cycles == s.cycles and torch.allclose(b.w, s.w, atol=1e-5) and torch.allclose(b.b, s.b, atol=1e-5)
