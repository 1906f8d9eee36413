"""MI and dependence estimators (repeval/mi.py, protocols/mine.py, protocols/ndm.py): closed-form
truths, invariance, the negative-bound flag, the stop rules, NDM's two scales, determinism.

All data is made here, seeded; problems are small (a few thousand pairs, a few dimensions).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln, ndtri

from repeval.config import ConfigError
from repeval.estimators import gaussian_mi
from repeval.mi import (StopRule, bound_terms, copula_apply, copula_fit, fit_with_stop_rule, infonce_terms,
                        shuffle_columns, transform_columns)
from repeval.protocol import ProtocolFailure, ProtocolInput, Split
from repeval.protocols.mine import MINEConfig, estimate_mi, estimate_mi_details, mine_protocol, reported
from repeval.protocols.ndm import NDMConfig, ndm_protocol, neural_dependency, neural_dependency_details
from repeval.seeding import generator

SMALL = dict(hidden=32, x_features=16, batch_size=128, eval_every=25, patience=3)


def gaussian_pairs(n, d, rho, seed):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, d))
    y = rho * x + np.sqrt(1 - rho ** 2) * g.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.float32)


def student_pairs(n, nu, seed):
    """(X, Y) bivariate Student-t, identity dispersion, nu degrees of freedom; I in closed form."""
    g = np.random.default_rng(seed)
    z = g.standard_normal((n, 2)) / np.sqrt(g.chisquare(nu, (n, 1)) / nu)

    def h(d):  # the d-dependent part of the entropy of a d-dim Student-t
        return gammaln(nu / 2) - gammaln((nu + d) / 2) + (nu + d) / 2 * (digamma((nu + d) / 2) - digamma(nu / 2))
    return z[:, :1].astype(np.float32), z[:, 1:].astype(np.float32), float(2 * h(1) - h(2))


def make_input(x_tr, x_te, img_tr=None, img_te=None) -> ProtocolInput:
    lab = lambda t: torch.zeros(t.shape[0], dtype=torch.long)   # noqa: E731
    return ProtocolInput("y", Split(x_tr, lab(x_tr), img_tr), Split(x_te, lab(x_te), img_te), 10)


# ----------------------------------------------------------------------------- pure math

def test_copula_normal_scores_on_training_rows_and_monotone_between():
    tr = torch.tensor([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0], [10.0, 1.0]])
    s = copula_fit(tr)
    z = copula_apply(s, tr)
    want = torch.tensor(ndtri((np.array([2, 0, 1, 3]) + 0.5) / 4), dtype=torch.float32)
    assert torch.allclose(z[:, 0], want, atol=1e-6) and torch.all(z[:, 1] == 0)   # constant column -> 0
    grid = torch.linspace(-5, 20, 101)[:, None].repeat(1, 2)
    out = copula_apply(s, grid)[:, 0]
    assert torch.all(out[1:] >= out[:-1]) and torch.all(torch.diff(out[(grid[:, 0] > 1) & (grid[:, 0] < 10)]) > 0)
    assert out[0] == out[1] == float(ndtri(0.5 / 4)) and out[-1] == float(ndtri(3.5 / 4))  # kept beyond the range


def test_copula_is_unchanged_by_monotone_maps_on_training_rows():
    g = torch.Generator().manual_seed(0)
    tr, te = torch.randn(500, 3, generator=g), torch.randn(200, 3, generator=g)
    f = lambda t: torch.exp(2 * t) - t ** 3 * 0   # noqa: E731  strictly increasing
    a, b = transform_columns("copula", tr, te), transform_columns("copula", f(tr), f(te))
    assert torch.allclose(a[0], b[0]) and (a[1] - b[1]).abs().max() < 0.05


def test_bounds_with_standard_errors():
    pos = torch.full((1000,), 2.0)
    neg = torch.zeros(4, 1000)
    v, se = bound_terms("dv", pos, neg)
    assert v == pytest.approx(2.0) and se == pytest.approx(0.0, abs=1e-12)
    v, _ = bound_terms("nwj", pos, neg)
    assert v == pytest.approx(2.0 - math.exp(-1))
    v, se = bound_terms("dv", torch.randn(1000, generator=generator(0)), torch.randn(4, 1000, generator=generator(1)))
    assert v < 0 and 0.02 < se < 0.2            # noise critic: DV = -1/2 in expectation, error ~ 1/sqrt(N)
    perfect = torch.eye(16) * 50.0
    v, _ = infonce_terms([perfect, perfect])
    assert v == pytest.approx(math.log(16), abs=1e-6)          # the ceiling log B, never above


def test_shuffle_columns_permutes_each_column():
    z = torch.arange(40.0).view(10, 4)
    q = shuffle_columns(z, generator(0))
    assert all(sorted(q[:, j].tolist()) == z[:, j].tolist() for j in range(4))
    assert not torch.equal(q, z)


# ----------------------------------------------------------------------------- stop rule

def scripted_fit(values, rule):
    """Run the stop rule with a scripted validation curve; the net's weight records the step."""
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    it = iter(values)
    loss = lambda step: -net.weight.sum()    # noqa: E731  each step adds 1 to the weight
    return fit_with_stop_rule(net, opt, loss, lambda: next(it), rule, what="test"), net


def test_stop_rule_plateau_stops_early_and_keeps_best_state():
    vals = [0.1, 0.5, 0.9, 0.95, 0.7, 0.6, 0.95, 0.5] + [0.0] * 100
    res, net = scripted_fit(vals, StopRule(max_steps=1000, eval_every=10, patience=3, min_delta=0.01))
    assert res.converged and res.steps_used == 70 and res.best_step == 40
    assert res.best_value == 0.95
    w0 = net.weight.item()          # the state at step 40 is back: weight = init + 40
    res2, net2 = scripted_fit(vals, StopRule(max_steps=40, eval_every=10, patience=3))
    assert net2.weight.item() == pytest.approx(w0)


def test_stop_rule_rising_curve_runs_to_cap_not_converged():
    res, _ = scripted_fit([0.01 * i for i in range(1, 100)], StopRule(max_steps=95, eval_every=10, patience=2))
    assert not res.converged and res.steps_used == 95 and res.best_step == 95   # evaluated at the cap too


def test_stop_rule_lr_drop_before_final_stop():
    vals = [1.0, 0.9, 0.9, 1.2, 1.1, 1.1, 1.1] + [0.0] * 50
    res, net = scripted_fit(vals, StopRule(max_steps=1000, eval_every=10, patience=2, lr_final=0.1))
    assert res.converged and res.steps_used == 60 and res.best_step == 40   # 1.2 came after the drop


def test_mine_plateau_stops_early_rising_runs_to_cap():
    x, y = gaussian_pairs(2000, 2, 0.0, seed=1)                      # nothing to learn: flat at 0
    r = estimate_mi_details(x, y, seed=0, steps=3000, **SMALL)
    assert r["converged"] == 1.0 and 500 <= r["steps_used"] < 1000 and r["still_increasing"] == 0.0
    x, y = gaussian_pairs(2000, 2, 0.9, seed=2)                      # 1.66 nats, far from reached in 60 steps
    r = estimate_mi_details(x, y, seed=0, steps=60, min_steps=0, **{**SMALL, "eval_every": 10, "min_delta": 0.0})
    assert r["converged"] == 0.0 and r["steps_used"] == 60 and r["still_increasing"] == 1.0


# ----------------------------------------------------------------------------- MINE

def test_mine_gaussian_within_15_percent():
    truth = gaussian_mi(0.5, 3)                                       # 0.4315 nats
    x, y = gaussian_pairs(6000, 3, 0.5, seed=103)
    r = estimate_mi_details(x, y, seed=0, **SMALL)
    assert abs(r["mi"] - truth) <= 0.15 * truth, (r, truth)
    assert r["diverged"] == 0.0 and r["converged"] == 1.0 and 0 < r["mi_stderr"] < 0.05


def test_mine_student_t_heavy_tails_within_02_nats():
    x, y, truth = student_pairs(4000, 1, seed=5)                     # Cauchy tails, I = 0.2242 nats
    r = estimate_mi_details(x, y, seed=0)                              # the defaults
    assert abs(r["mi_bound"] - truth) < 0.2, (r, truth)


def test_mine_invariant_under_monotone_per_dimension_maps():
    x, y = gaussian_pairs(4000, 2, 0.7, seed=6)                      # 0.673 nats
    a = estimate_mi(x, y, seed=0, **SMALL)
    b = estimate_mi(np.sinh(2 * x) + x, np.exp(y), seed=0, **SMALL)   # strictly increasing, heavy-tailed
    assert abs(a - b) < 0.1 and a > 0.4, (a, b)


def test_negative_bound_is_flagged_and_never_read_as_mi():
    r = reported({"bound": -0.03, "stderr": 0.02, "bound_train": 0.01, "val_best": 0.0, "steps_used": 50.0,
                  "converged": 1.0, "diverged": 0.0})
    assert r["mi"] == 0.0 and r["mi_bound"] == -0.03 and r["negative_bound"] == 1.0 and r["mi_stderr"] == 0.02
    seen = set()
    for seed in range(4):                                              # independent pairs: bound ~ 0 +- se
        x, y = gaussian_pairs(600, 2, 0.0, seed=20 + seed)
        d = estimate_mi_details(x, y, seed=seed, steps=100, min_steps=0, **SMALL)
        assert d["mi"] == max(0.0, d["mi_bound"]) and d["negative_bound"] == float(d["mi_bound"] < 0)
        assert d["mi_stderr"] > 0 and d["mi_bound"] > -4 * d["mi_stderr"] - 0.02
        seen.add(d["negative_bound"])
    assert 1.0 in seen


@pytest.mark.parametrize("estimator", ["infonce", "nwj"])
def test_other_estimators(estimator):
    x, y = gaussian_pairs(3000, 2, 0.99, seed=8)                     # 3.92 nats > log 16
    r = estimate_mi_details(x, y, seed=0, estimator=estimator, **{**SMALL, "batch_size": 16, "steps": 600})
    if estimator == "infonce":
        assert 2.0 < r["mi_bound"] <= math.log(16) + 1e-9, r         # capped at log(batch)
    else:
        assert 2.0 < r["mi_bound"] < 4.3, r


def test_mine_same_seed_same_number():
    x, y = gaussian_pairs(600, 2, 0.5, seed=7)
    opts = dict(steps=60, min_steps=0, **SMALL)
    a, b = estimate_mi(x, y, seed=3, **opts), estimate_mi(torch.from_numpy(x), torch.from_numpy(y), seed=3, **opts)
    assert a == b and a != estimate_mi(x, y, seed=4, **opts)


def test_mine_protocol_on_images_reports_diagnostics():
    g = generator(8)
    img = torch.rand(96, 3, 16, 16, generator=g) * 2 - 1
    codes = img.mean((2, 3)) + 0.1 * torch.randn(96, 3, generator=g)
    inp = make_input(codes[:64], codes[64:], img[:64], img[64:])
    cfg = MINEConfig(steps=20, min_steps=0, batch_size=32, hidden=32, x_features=16, eval_every=5)
    r = mine_protocol(inp, cfg, seed=0)
    assert set(r) >= {"mi", "mi_bound", "mi_stderr", "negative_bound", "mi_train", "steps_used", "converged"}
    assert r == mine_protocol(inp, cfg, seed=0)
    assert all(np.isfinite(v) for v in r.values()) and r["converged"] in (0.0, 1.0)


def test_mine_divergence_raises_protocol_failure():
    x, y = gaussian_pairs(200, 2, 0.9, seed=9)
    with pytest.raises(ProtocolFailure, match="MINE"):
        estimate_mi(x, y, steps=50, batch_size=64, lr=1e9, hidden=16, x_features=8, transform="none")


# ----------------------------------------------------------------------------- NDM

NDM_FAST = dict(batch_size=256, hidden=(64, 32), eval_every=25, patience=3, lr=1e-3)


def correlated_code(n, d, seed, scale=1.0):
    g = np.random.default_rng(seed)
    z = np.sqrt(0.5) * g.standard_normal((n, 1)) + np.sqrt(0.5) * g.standard_normal((n, d))
    return (scale * z).astype(np.float32)                              # equicorrelated 0.5


def test_ndm_independent_near_zero_correlated_clearly_positive():
    z = np.random.default_rng(10).standard_normal((3000, 8)).astype(np.float32)
    r = neural_dependency_details(z, seed=0, **NDM_FAST)
    assert r["ndm_converged"] == 1.0 and abs(r["ndm_bound"]) < 0.05 and r["ndm"] == max(0.0, r["ndm_bound"])
    z = correlated_code(3000, 8, seed=11)                              # TC = 1/2 (7 log 2 - log 4.5) = 1.67
    v = neural_dependency(z, seed=0, **NDM_FAST)
    assert 1.0 < v < 1.9, v
    small = dict(steps=5, batch_size=64, hidden=(32, 8))
    assert neural_dependency(z[:200], seed=1, **small) == neural_dependency(z[:200], seed=1, **small)


def test_ndm_protocol_reports_zscored_and_raw_scale():
    """A random-init y has a tiny scale: sigmoid(y) ~ 0.5 +- 0.01. Dependence is scale-free: the
    z-scored ``ndm`` sees it; ``ndm_raw`` (the paper's scale, no z-scores) reads much less."""
    z = torch.from_numpy(correlated_code(3000, 8, seed=12, scale=0.01))
    inp = make_input(z[:2000], z[2000:])
    r = ndm_protocol(inp, NDMConfig(**NDM_FAST), seed=0)
    assert {"ndm", "ndm_raw", "ndm_stderr", "ndm_raw_stderr", "ndm_converged", "ndm_raw_converged"} <= set(r)
    assert r["ndm"] > 1.0 and r["ndm_raw"] < 0.5 * r["ndm"], r


def test_array_apis_reject_unknown_options_by_name():
    z = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    with pytest.raises(ConfigError, match="neural_dependency.stepz"):
        neural_dependency(z, stepz=3)
    with pytest.raises(ConfigError, match="estimate_mi.lr_fnal"):
        estimate_mi(z[:, :1], z[:, 1:], lr_fnal=1e-5)
    with pytest.raises(ConfigError, match="estimator"):
        estimate_mi(z[:, :1], z[:, 1:], estimator="jsd")
