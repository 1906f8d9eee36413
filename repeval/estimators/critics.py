"""Critic building blocks shared by the encoder families (Hjelm et al. 2019, Sec. 3 and 4).

* :class:`DotCritic` - the "encoder-and-dot" embedding network of the released DIM code
  (``MI1x1ConvNet``): 1x1 conv (no bias) -> BN -> ReLU -> 1x1 conv, plus a linear 1x1 shortcut,
  then LayerNorm over channels. Scores are dot products of two such embeddings.
* :func:`global_dim_net` - DIM(G)'s network for the whole feature map M: a copy of the encoder's
  remaining layers ending in a D-unit linear layer (released ``GlobalDIM``).
* :func:`prior_discriminator` - MLP 64 -> 1000 -> 200 -> 1 (DIM prior matching, AAE).
* :class:`JointDiscriminator` - BiGAN's D(x, z).
* :func:`gan_losses_with_gp` - discriminator GAN loss and the zero-centred gradient penalty
  0.5 * (E|grad D(real)|^2 + E|grad D(fake)|^2) (Hjelm et al. 2019, Sec. 3.5; Mescheder et al. 2018),
  or on real samples only.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .nets import conv_bn_relu, mlp


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split() for line in f)
    except OSError:
        return False


def default_gemm() -> str:
    """How :class:`DotCritic` runs its 1x1 convs on CPU: ``conv`` (oneDNN) or ``linear`` (MKL GEMM).

    Same parameters and the same numbers up to float rounding (~4e-6); only speed differs, and
    it differs by machine: on AVX-512 CPUs oneDNN's 1x1 conv beat MKL's GEMM by ~50% (measured),
    on an AVX2-only EPYC (Zen 3) the GEMM form was 15% faster (critic forward+backward, 2048
    units). Override with the environment variable REPEVAL_CRITIC_GEMM=conv|linear. CUDA tensors
    always take the GEMM form.
    """
    env = os.environ.get("REPEVAL_CRITIC_GEMM", "").strip().lower()
    if env in ("conv", "linear"):
        return env
    return "conv" if _cpu_has("avx512f") else "linear"


class DotCritic(nn.Module):
    """``MI1x1ConvNet``: (N, C, H, W) or (N, C) -> (N, H*W, D) embeddings, LayerNorm'd over D.

    y = LayerNorm_D( conv2(ReLU(BN(conv1 x))) + shortcut(x) ), every conv 1x1, conv1 and the
    shortcut without bias (the released network). The parameters are those of the 1x1 convs; the
    map is processed channels-last, as one (N*H*W, C) row matrix, so each 1x1 conv is a single GEMM
    (oneDNN conv or MKL GEMM, see :func:`default_gemm`), the shortcut and conv2's bias are
    accumulated into conv2's GEMM (addmm), and the LayerNorm runs over a contiguous last
    dimension with no permute copies. BN statistics are over all N*H*W positions, as BatchNorm2d's.
    The shortcut starts as a noisy identity (ones on the diagonal, U(-0.01, 0.01) elsewhere) when
    D >= C, as released.
    """

    def __init__(self, in_channels: int, units: int, gemm: str | None = None):
        super().__init__()
        self.units = units
        self.gemm = gemm or default_gemm()
        self.conv1 = nn.Conv2d(in_channels, units, 1, bias=False)
        self.bn = nn.BatchNorm2d(units)
        self.conv2 = nn.Conv2d(units, units, 1, bias=True)
        self.shortcut = nn.Conv2d(in_channels, units, 1, bias=False)
        self.ln = nn.LayerNorm(units)
        if units >= in_channels:
            with torch.no_grad():
                w = self.shortcut.weight
                w.uniform_(-0.01, 0.01)
                idx = torch.arange(in_channels)
                w[idx, idx, 0, 0] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, :, None, None]
        if self.gemm == "conv" and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
            h = self.conv2(F.relu(self.bn(self.conv1(x)))) + self.shortcut(x)
            n, d = h.shape[:2]
            return self.ln(h.permute(0, 2, 3, 1)).reshape(n, -1, d)   # permute: a view here
        n, c = x.shape[:2]
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)                     # (N*H*W, C)
        d = self.units
        h = F.linear(rows, self.conv1.weight.view(d, c))
        h = F.relu_(self.bn(h.view(-1, d, 1, 1))).view(-1, d)
        pre = torch.addmm(self.conv2.bias, rows, self.shortcut.weight.view(d, c).t())
        pre = torch.addmm(pre, h, self.conv2.weight.view(d, d).t())
        return self.ln(pre).view(n, -1, d)


def global_dim_net(in_channels: int, units: int, fc_units: int = 1024) -> nn.Sequential:
    """DIM(G)'s M -> D-vector network: the encoder's remaining layers copied (conv 4x4/2/1 256, BN,
    ReLU; Linear 4096 -> 1024, BN, ReLU) with the last layer replaced by Linear(1024, D)."""
    return nn.Sequential(conv_bn_relu(in_channels, 256), nn.Flatten(),
                         nn.Linear(256 * 4 * 4, fc_units, bias=False), nn.BatchNorm1d(fc_units),
                         nn.ReLU(inplace=True), nn.Linear(fc_units, units))


def prior_discriminator(dim: int = 64) -> nn.Sequential:
    """Prior-matching discriminator, MLP dim -> 1000 ReLU -> 200 ReLU -> 1 (Hjelm et al. 2019)."""
    return mlp([dim, 1000, 200, 1])


class JointDiscriminator(nn.Module):
    """BiGAN/ALI D(x, z): conv x-branch (4x4/2/1 convs 64, 128, 256, LeakyReLU 0.2, no BN) to 256
    features, concatenated with z, then FC 512 - 128 - 1 (Hjelm et al. 2019, Sec. 4, baselines)."""

    def __init__(self, in_channels: int = 3, z_dim: int = 64, x_features: int = 256):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.x_branch = nn.Sequential(
            nn.Conv2d(in_channels, 64, 4, 2, 1), act(), nn.Conv2d(64, 128, 4, 2, 1), act(),
            nn.Conv2d(128, 256, 4, 2, 1), act(), nn.Flatten(), nn.Linear(256 * 4 * 4, x_features), act())
        self.joint = nn.Sequential(nn.Linear(x_features + z_dim, 512), act(), nn.Linear(512, 128), act(),
                                   nn.Linear(128, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_branch(x).float(), z.float()], 1)).float().squeeze(1)


def _call(disc: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return disc(*inputs).float().reshape(-1)


def gan_losses_with_gp(disc: nn.Module, real: tuple[torch.Tensor, ...], fake: tuple[torch.Tensor, ...],
                       penalize: str = "both") -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss E_P[softplus(-D)] + E_Q[softplus(D)] and its gradient penalty.

    ``real``/``fake`` are the discriminator's input tuples (one tensor for a prior discriminator,
    (x, z) for BiGAN); they are detached here, so only the discriminator gets gradients. With
    ``penalize="both"`` the penalty is 0.5 * (E_P |grad_in D|^2 + E_Q |grad_in D|^2) (DIM's prior
    matching); with ``"real"`` it is 0.5 * E_P |grad_in D|^2 (the R1-style penalty of the authors'
    framework on its ALI discriminator). Squared norms are summed over all inputs of a sample and
    computed from the same forward pass as the GAN loss (create_graph=True).
    """
    if penalize not in ("both", "real"):
        raise ValueError(f"penalize must be 'both' or 'real', got {penalize!r}")
    real = tuple(t.detach().float().requires_grad_(True) for t in real)
    fake = tuple(t.detach().float().requires_grad_(penalize == "both") for t in fake)
    d_real, d_fake = _call(disc, real), _call(disc, fake)
    gan = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if penalize == "real":
        grads = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        return gan, 0.5 * sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads).mean()
    grads = torch.autograd.grad(d_real.sum() + d_fake.sum(), real + fake, create_graph=True)
    sq = [g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads]
    gp = 0.5 * (sum(sq[:len(real)]).mean() + sum(sq[len(real):]).mean())
    return gan, gp


def nonsaturating_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator/encoder loss E_Q[softplus(-D)] (= -E log sigmoid D)."""
    return F.softplus(-d_fake.float()).mean()
