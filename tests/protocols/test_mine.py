"""MINE (protocols/mine.py): closed-form truths (Gaussian, Student-t), invariance under monotone maps, the
negative-bound flag, the stop rule, other estimators, determinism, divergence, strict array APIs.

All data is made here, seeded; problems are small (a few thousand pairs, a few dimensions).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln

from repeval.config import ConfigError
from repeval.estimators.bounds import gaussian_mi
from repeval.plugin.protocol import ProtocolFailure
from repeval.protocols.mine import MINEConfig, estimate_mi, estimate_mi_details, mine_protocol, reported
from repeval.protocols.ndm import neural_dependency
from repeval.seeding import generator
from tests.helpers import code_input


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


def test_mine_plateau_stops_early_rising_runs_to_cap():
    x, y = gaussian_pairs(2000, 2, 0.0, seed=1)                      # nothing to learn: flat at 0
    r = estimate_mi_details(x, y, seed=0, steps=3000, **SMALL)
    assert r["converged"] == 1.0 and 500 <= r["steps_used"] < 1000 and r["still_increasing"] == 0.0
    x, y = gaussian_pairs(2000, 2, 0.9, seed=2)                      # 1.66 nats, far from reached in 60 steps
    r = estimate_mi_details(x, y, seed=0, steps=60, min_steps=0, **{**SMALL, "eval_every": 10, "min_delta": 0.0})
    assert r["converged"] == 0.0 and r["steps_used"] == 60 and r["still_increasing"] == 1.0


def test_mine_gaussian_within_15_percent():
    truth = gaussian_mi(0.5, 3)                                       # 0.4315 nats
    x, y = gaussian_pairs(6000, 3, 0.5, seed=103)
    r = estimate_mi_details(x, y, seed=0, folds=2, **SMALL)           # cross-fitted: every pair held out once
    assert abs(r["mi"] - truth) <= 0.15 * truth, (r, truth)
    assert r["diverged"] == 0.0 and r["converged"] == 1.0 and 0 < r["mi_stderr"] < 0.05


def test_single_split_and_cross_fitting_agree_on_a_gaussian():
    """folds=1 (default) holds out test_fraction of the pairs; folds=2 holds out every pair once."""
    truth = gaussian_mi(0.5, 3)
    x, y = gaussian_pairs(6000, 3, 0.5, seed=103)
    one = estimate_mi_details(x, y, seed=0, **SMALL)
    two = estimate_mi_details(x, y, seed=0, folds=2, **SMALL)
    assert abs(one["mi"] - truth) < 0.1 and abs(two["mi"] - truth) < 0.1, (one, two, truth)
    assert one["mi"] != two["mi"] and two["mi_stderr"] < one["mi_stderr"]      # 6,000 held-out pairs vs 1,800
    with pytest.raises(ValueError, match="test_fraction"):
        estimate_mi(x, y, test_fraction=1.0)


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
    inp = code_input(codes[:64], codes[64:], img[:64], img[64:])
    cfg = MINEConfig(steps=20, batch_size=32, hidden=32, x_features=16, eval_every=2)
    r = mine_protocol(inp, cfg, seed=0)
    assert set(r) >= {"mi", "mi_bound", "mi_stderr", "negative_bound", "mi_train", "steps_used", "converged",
                      "late_gain"}
    assert r == mine_protocol(inp, cfg, seed=0)
    assert all(np.isfinite(v) for v in r.values()) and r["converged"] in (0.0, 1.0)
    assert r["steps_used"] == 20                                      # a fixed budget: patience stops nothing
    short = mine_protocol(inp, replace(cfg, eval_every=5), seed=0)   # one evaluation per quarter: cannot tell
    assert short["converged"] == 0.0 and "late_gain" not in short


def test_mine_cosine_budget_flags_a_curve_still_rising():
    """The default schedule runs its whole budget; ``converged`` reads the validation curve's last
    quarter: 1.66 nats are far from reached in 80 steps (still rising), nothing to learn is flat."""
    opts = dict(hidden=32, x_features=16, batch_size=128, eval_every=10, transform="none")
    x, y = gaussian_pairs(2000, 2, 0.9, seed=2)
    rising = estimate_mi_details(x, y, seed=0, schedule="cosine", steps=80, lr=1e-3, lr_final=1e-3 / 2, **opts)
    assert rising["converged"] == 0.0 and rising["steps_used"] == 80
    x, y = gaussian_pairs(2000, 2, 0.0, seed=1)
    flat = estimate_mi_details(x, y, seed=0, schedule="cosine", steps=400, lr=5e-3, lr_final=0.0, **opts)
    assert flat["converged"] == 1.0 and flat["steps_used"] == 400


def test_mine_cosine_config_is_checked():
    with pytest.raises(ValueError, match="cosine schedule needs"):
        MINEConfig(lr=1e-3, lr_final=1e-2)
    with pytest.raises(ValueError, match="mine.schedule must be one of constant, cosine"):
        MINEConfig(schedule="linear")


def test_mine_divergence_raises_protocol_failure():
    x, y = gaussian_pairs(200, 2, 0.9, seed=9)
    with pytest.raises(ProtocolFailure, match="MINE"):
        estimate_mi(x, y, steps=50, batch_size=64, lr=1e9, hidden=16, x_features=8, transform="none")


def test_array_apis_reject_unknown_options_by_name():
    z = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    with pytest.raises(ConfigError, match="neural_dependency.stepz"):
        neural_dependency(z, stepz=3)
    with pytest.raises(ConfigError, match="estimate_mi.lr_fnal"):
        estimate_mi(z[:, :1], z[:, 1:], lr_fnal=1e-5)
    with pytest.raises(ConfigError, match="estimator"):
        estimate_mi(z[:, :1], z[:, 1:], estimator="jsd")
