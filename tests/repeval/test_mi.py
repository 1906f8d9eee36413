"""MI and dependence estimation cores (repeval/estimators/mi.py): the copula transform, bound terms with standard
errors, column shuffles, the stop rule, the statistics network's all-pairs scores. MINE and NDM themselves: tests/protocols/test_mine.py and
tests/protocols/test_ndm.py.

All data is made here, seeded; problems are small.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from repeval.estimators.mi import (StatisticsNetwork, StopRule, bound_terms, copula_apply, copula_fit, fit_with_stop_rule,
                        infonce_terms, late_gain, shuffle_columns, transform_columns)
from repeval.seeding import generator


# ------------------------------------------------------------------------------------------- pure math

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


# ------------------------------------------------------------------------------------------- stop rule

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


def test_cosine_schedule_runs_the_budget_decays_lr_and_keeps_best_state():
    vals = [0.1, 0.5, 0.9, 0.95, 0.7, 0.6, 0.95, 0.5, 0.6, 0.55, 0.6, 0.58]
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    w0, lrs, it = net.weight.item(), [], iter(vals)

    def loss(step):
        lrs.append(opt.param_groups[0]["lr"])
        return -net.weight.sum()
    res = fit_with_stop_rule(net, opt, loss, lambda: next(it),
                             StopRule(max_steps=120, eval_every=10, patience=1, lr_final=0.0, schedule="cosine"),
                             what="test")
    assert res.steps_used == 120 and res.best_step == 40 and res.best_value == 0.95   # patience stopped nothing
    assert lrs[0] == 1.0 and lrs[60] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 119 / 120)))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert net.weight.item() == pytest.approx(w0 + sum(lrs[:40]))          # the state after step 40 is back
    # last quarter (steps 100-120) against the one before (70-90): lower, so levelled off
    assert res.converged and res.late_gain == pytest.approx(np.mean([0.55, 0.6, 0.58]) - np.mean([0.95, 0.5, 0.6]))


def test_late_gain_tells_a_rising_curve_from_a_noisy_plateau():
    g = np.random.default_rng(0)
    steps = range(50, 2050, 50)
    rising = [(s, 1.0 + s / 1000 + 0.05 * g.standard_normal()) for s in steps]
    plateau = [(s, 3.0 + 0.5 * g.standard_normal()) for s in steps]           # +-0.5 nats of noise, no trend
    gain, ok = late_gain(rising, 0.02)
    assert gain == pytest.approx(0.5, abs=0.1) and not ok
    gain, ok = late_gain(plateau, 0.02)
    assert abs(gain) < 0.6 and ok
    assert late_gain([(s, 1.0) for s in (10, 20, 30)], 0.02) == (pytest.approx(math.nan, nan_ok=True), False)
    with pytest.raises(ValueError, match="unknown schedule 'linear'; valid: constant, cosine"):
        scripted_fit([1.0], StopRule(max_steps=10, eval_every=5, patience=1, schedule="linear"))


@pytest.mark.parametrize("y_features", [0, 8])
def test_statistics_network_score_matrix_is_every_pair(y_features):
    """S[i, j] = T(x_i, y_j), with y concatenated as is or through its own branch."""
    torch.manual_seed(0)
    net = StatisticsNetwork((3,), 4, hidden=16, x_features=8, y_features=y_features)
    x, y = torch.randn(5, 3), torch.randn(5, 4)
    s = net.score_matrix(net.embed(x), y)
    for i in range(5):
        for j in range(5):
            assert torch.allclose(s[i, j], net(x[i:i + 1], y[j:j + 1])[0], atol=1e-6)
    n_y = sum(p.numel() for p in net.y_branch.parameters())
    assert (n_y > 0) == (y_features > 0)
