"""Critic building blocks (repeval/estimators/critics.py): the gradient penalty, DIM's local critic (DotCritic)
layout against the released NCHW network."""
from __future__ import annotations

import pytest
import torch

import repeval
from repeval.estimators.critics import DotCritic, gan_losses_with_gp
from tests.helpers import make_cfg

repeval.load_builtins()
from repeval.models.dim import DIM, local_scores  # noqa: E402  (after the registry is loaded)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gradient_penalty_value_and_effect():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 1)
    z, q = torch.rand(32, 64), torch.rand(32, 64)
    _, gp = gan_losses_with_gp(lin, (z,), (q,))
    # D linear: grad_in D = w for every sample, so 0.5 * (|w|^2 + |w|^2) = |w|^2
    assert torch.allclose(gp, lin.weight.pow(2).sum(), rtol=1e-5)
    _, gp_real = gan_losses_with_gp(lin, (z,), (q,), penalize="real")          # BiGAN's form
    assert torch.allclose(gp_real, 0.5 * lin.weight.pow(2).sum(), rtol=1e-5)
    disc = DIM(make_cfg(), alpha=0.0, beta=1.0, gamma=0.1).prior_disc
    gan, gp = gan_losses_with_gp(disc, (z,), (q,))
    params = list(disc.parameters())
    g_gan = torch.autograd.grad(gan, params, retain_graph=True)
    g_gp = torch.autograd.grad(gp, params, allow_unused=True)   # the last bias does not enter grad_in D
    g_gp = [torch.zeros_like(p) if g is None else g for g, p in zip(g_gp, params)]
    assert float(gp.detach()) > 0
    assert max(float(g.abs().max()) for g in g_gp) > 1e-6           # the penalty moves D
    total = [a + b for a, b in zip(g_gan, g_gp)]
    assert any(not torch.allclose(a, b) for a, b in zip(total, g_gan))


@pytest.mark.parametrize("gemm", ["conv", "linear"])
def test_dim_local_critic_layout(gemm):
    torch.manual_seed(0)
    net = DotCritic(128, 48, gemm=gemm)
    m = torch.randn(4, 128, 8, 8)
    out = net(m)
    assert out.shape == (4, 64, 48)
    # LayerNorm over channels at every location
    assert torch.allclose(out.mean(-1), torch.zeros(4, 64), atol=1e-5)
    # the same numbers as the released NCHW network (MI1x1ConvNet) at each location
    ref = net.conv2(torch.relu(net.bn(net.conv1(m)))) + net.shortcut(m)
    ref = net.ln(ref.permute(0, 2, 3, 1)).reshape(4, 64, 48)
    assert torch.allclose(out, ref, atol=1e-5)
    g = DotCritic(64, 48, gemm=gemm)(torch.randn(4, 64))
    assert g.shape == (4, 1, 48)
    s = local_scores(g, out)
    assert s.shape == (4, 4, 64)
    assert torch.allclose(s, torch.einsum("ixd,jld->ijl", g, out), atol=1e-4)
    w = DotCritic(64, 128, gemm=gemm).shortcut.weight[:, :, 0, 0]
    assert torch.equal(torch.diagonal(w[:64]), torch.ones(64)) and w[64:].abs().max() <= 0.01
