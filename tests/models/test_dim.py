"""Deep InfoMax (models/dim.py): the prior term's share of the encoder gradients, a bf16 step."""
from __future__ import annotations

import math

import pytest
import torch

import repeval
from tests.helpers import build, make_cfg, run_steps

repeval.load_builtins()
from repeval.models.dim import DIM  # noqa: E402  (after the registry is loaded)

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder_grads(fam, x):
    fam.zero_grad(set_to_none=True)
    taps = fam.encoder(x, local=True)
    total, _ = fam.encoder_loss(taps)
    total.backward()
    return torch.cat([p.grad.flatten() for p in fam.encoder.parameters() if p.grad is not None])


def test_prior_term_changes_the_encoder_gradients(image_batch):
    x = image_batch[0][:16]
    cfg = make_cfg()
    torch.manual_seed(0)
    with_prior = DIM(cfg, estimator="infonce", alpha=0.0, beta=1.0, gamma=0.1, critic_units=32).train()
    without = DIM(cfg, estimator="infonce", alpha=0.0, beta=1.0, gamma=0.0, critic_units=32).train()
    without.load_state_dict(with_prior.state_dict(), strict=False)
    g1, g0 = _encoder_grads(with_prior, x), _encoder_grads(without, x)
    assert torch.isfinite(g1).all() and torch.isfinite(g0).all()
    rel = (g1 - g0).norm() / g0.norm()
    assert rel > 1e-4, float(rel)
    # and the difference is exactly gamma times the prior term's gradient
    with_prior.zero_grad(set_to_none=True)
    with_prior.prior_encoder_loss(with_prior.encoder(x)["y"]).backward()
    gp = torch.cat([p.grad.flatten() for p in with_prior.encoder.parameters() if p.grad is not None])
    assert (g1 - g0 - 0.1 * gp).norm() < 0.05 * (0.1 * gp).norm()


def test_bf16_precision_runs_a_dim_step(image_batch):
    # (slow on CPUs without native bf16, e.g. AVX2-only: kept tiny)
    x = image_batch[0][:8]
    fam = build("dim-l-infonce", precision="bf16", critic_units=16)
    hist = run_steps(fam, x, image_batch[1][:8], steps=1)
    assert all(math.isfinite(v) for v in hist[0].values())
