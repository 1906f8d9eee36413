"""Networks shared by every encoder family (Hjelm et al. 2019, App. A and Sec. 4).

Every model in the tables uses :class:`SharedEncoder`, so rows compare objectives, not
architectures. Its forward returns an ordered mapping of named feature taps, which is the whole
encoder contract: a user's ``nn.Module`` that returns such a mapping runs through every protocol.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

TAPS = ("conv", "fc", "y")


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """Conv 4x4 stride 2 pad 1 (no bias), BN, ReLU: halves the spatial size."""
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def deconv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv 4x4 stride 2 pad 1 (no bias), BN, ReLU: doubles the spatial size."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SharedEncoder(nn.Module):
    """The CIFAR encoder of Hjelm et al. 2019, App. A: taps ``conv`` (256x4x4), ``fc`` (1024) and ``y`` (64).

    ``forward(x, local=True)`` also returns ``local``, the 128x8x8 map M that DIM(L) scores
    against y (Hjelm et al. 2019, Sec. 3.2); it is not a benchmark tap.
    """

    taps = TAPS
    input_size = 32   # images of 32x32 px (the conv stack ends at 4x4)

    def __init__(self, in_channels: int = 3, fc_units: int = 1024, y_dim: int = 64):
        super().__init__()
        self.block1 = conv_bn_relu(in_channels, 64)   # 64x16x16
        self.block2 = conv_bn_relu(64, 128)           # 128x8x8: local map M
        self.block3 = conv_bn_relu(128, 256)          # 256x4x4: `conv`
        self.fc = nn.Sequential(nn.Linear(256 * 4 * 4, fc_units, bias=False), nn.BatchNorm1d(fc_units), nn.ReLU(inplace=True))
        self.out = nn.Linear(fc_units, y_dim)
        self.y_dim = y_dim

    def forward(self, x: torch.Tensor, local: bool = False) -> "OrderedDict[str, torch.Tensor]":
        m = self.block2(self.block1(x))
        c = self.block3(m)
        f = self.fc(c.flatten(1))
        y = self.out(f)
        taps = OrderedDict()
        if local:
            taps["local"] = m
        taps["conv"], taps["fc"], taps["y"] = c, f, y
        return taps


class Decoder(nn.Module):
    """Baseline generator/decoder (Hjelm et al. 2019, Sec. 4, baselines): z (64) -> 3x32x32 in [-1, 1]."""

    def __init__(self, z_dim: int = 64, out_channels: int = 3):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(z_dim, 256 * 4 * 4, bias=False), nn.BatchNorm1d(256 * 4 * 4), nn.ReLU(inplace=True))
        self.net = nn.Sequential(deconv_bn_relu(256, 128), deconv_bn_relu(128, 64),
                                 nn.ConvTranspose2d(64, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 256, 4, 4))


def mlp(sizes: list[int] | tuple[int, ...]) -> nn.Sequential:
    """Dense ReLU network, e.g. ``mlp([64, 1000, 200, 1])`` (the prior discriminator and NDM critic)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def probe_head(d_in: int, n_classes: int, hidden: int = 200, dropout: float = 0.1) -> nn.Sequential:
    """The non-linear classifier of Table 1 (Hjelm et al. 2019, Sec. 4.2):
    Linear(d_in, hidden) -> Dropout -> BN1d -> ReLU -> Linear(hidden, n_classes). Also the head of
    the fully supervised baseline."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Dropout(dropout), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, n_classes))
