"""Synthetic images and graded perturbations (noise, blur) for the SSIM sanity checks of
``repeval validate``. Pure tensor functions, seeded, no I/O; images live in [-1, 1] like the
benchmark's data (Hjelm et al. 2019's released code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..estimators.ssim import gaussian_window
from ..seeding import derive_seed, generator


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding, window radius ceil(3 sigma)
    (:func:`repeval.estimators.ssim.gaussian_window`); sigma <= 0 returns x."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3.0 * sigma))
    k = gaussian_window(2 * r + 1, sigma).to(x)
    c = x.shape[1]
    kh = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    kv = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), kh, groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), kv, groups=c)


def add_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """x + std * N(0, 1), clipped to [-1, 1] (the data range)."""
    if std <= 0:
        return x
    e = torch.randn(x.shape, generator=generator(seed)).to(x)
    return (x + std * e).clamp(-1.0, 1.0)


def synthetic_images(n: int, seed: int, size: int = 32, channels: int = 3) -> torch.Tensor:
    """n natural-looking test images in [-1, 1]: smooth random fields plus a few hard-edged boxes.

    Smooth (blurred noise, sigma 2) plus edges, so both noise (high frequencies) and blur (edges)
    visibly change them.
    """
    g = generator(derive_seed(seed, "synthetic-images"))
    field = gaussian_blur(torch.randn(n, channels, size, size, generator=g), 2.0)
    field = field / field.flatten(1).std(1).view(n, 1, 1, 1).clamp_min(1e-6) * 0.35
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for _ in range(3):
        lo = torch.randint(0, size // 2, (n, 2), generator=g)
        hi = lo + torch.randint(size // 4, size // 2, (n, 2), generator=g)
        mask = ((yy[None] >= lo[:, 0, None, None]) & (yy[None] < hi[:, 0, None, None])
                & (xx[None] >= lo[:, 1, None, None]) & (xx[None] < hi[:, 1, None, None]))
        shade = torch.rand(n, channels, 1, 1, generator=g) - 0.5
        field = field + mask[:, None].float() * shade
    return field.clamp(-1.0, 1.0)
