"""SSIM-type image similarities as pure tensor functions (no training, no I/O).

Shared by the reconstruction protocol (protocols/recon.py: Table 4's SSIM columns) and the SSIM
check of ``repeval validate``. Images are (N, C, H, W) float tensors in [-1, 1]; every metric
returns one value per image, shape (N,).

- :func:`ssim`: single-scale SSIM (Wang et al. 2004, Eq. 13) via ``pytorch_msssim.ssim``: Gaussian
  window 11x11, sigma 1.5, K = (0.01, 0.03), valid convolution, images mapped to [0, 1], data range 1.
- :func:`ms_ssim`: multi-scale SSIM (Wang et al. 2003, Eq. 7) for small images: ``scales``
  scales with 2x2 average pooling between them, a ``win_size`` Gaussian window at every scale,
  contrast-structure terms at the first ``scales - 1`` scales and the full SSIM at the last, each
  clipped at 0, with the first ``scales`` standard weights :data:`MS_SSIM_WEIGHTS` renormalised.
- :func:`released_ssim`: the released DIM code's "MS-SSIM" reproduced with its bug (single scale,
  11x11 window of sigma 11, zero padding 5, [0, 1] constants on [-1, 1] data).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, five scales


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (clipped); any shape."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def gaussian_window(size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps centred on tap ``size // 2``, shape (size,)."""
    coords = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim_components(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, data_range: float = 1.0,
                    k: tuple[float, float] = (0.01, 0.03)) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, each (N, C).

    ``x``, ``y``: (N, C, H, W) in [0, ``data_range``]; ``win``: 1-D window (w,), applied separably
    with no padding (valid filtering), the definition of ``pytorch_msssim``.
    """
    c = x.shape[1]
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    wh = win.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wv = win.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, wh, groups=c), wv, groups=c)

    mu1, mu2 = blur(x), blur(y)
    s11 = blur(x * x) - mu1 * mu1
    s22 = blur(y * y) - mu2 * mu2
    s12 = blur(x * y) - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
    return ssim_map.flatten(2).mean(-1), cs.flatten(2).mean(-1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Single-scale SSIM (N,) of (N, C, H, W) images in [-1, 1] (module docstring)."""
    from pytorch_msssim import ssim as _ssim
    return _ssim(to_unit(x), to_unit(y), data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, scales: int = 3, win_size: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM (N,) of (N, C, H, W) images in [-1, 1] (module docstring).

    Raises ValueError when the smallest scale is narrower than the window."""
    x, y = to_unit(x).float(), to_unit(y).float()
    smallest = min(x.shape[-2:]) // 2 ** (scales - 1)
    if smallest < win_size:
        raise ValueError(f"ms_ssim: {scales} scales of a {tuple(x.shape[-2:])} image leave {smallest} px, "
                         f"less than the {win_size}-px window")
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device)
    w = w / w.sum()
    win = gaussian_window(win_size, sigma, x.device)
    terms = []
    for s in range(scales):
        full, cs = ssim_components(x, y, win)
        if s < scales - 1:
            terms.append(cs.clamp_min(0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            terms.append(full.clamp_min(0))
    val = torch.prod(torch.stack(terms) ** w.view(-1, 1, 1), dim=0)   # (N, C)
    return val.mean(1)


def released_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The released DIM code's "MS-SSIM" (N,) of (N, C, H, W) images, reproduced as is.

    Single scale, 11x11 Gaussian window with sigma 11 (the bug: nearly a box window), zero padding
    5 (same-size maps), constants for a [0, 1] range (C1 = 0.01^2, C2 = 0.03^2), applied to the
    [-1, 1] data directly.
    """
    win = gaussian_window(11, 11.0, x.device)
    c = x.shape[1]
    w2 = (win[:, None] * win[None, :]).expand(c, 1, 11, 11).contiguous()

    def blur(t):
        return F.conv2d(t, w2, padding=5, groups=c)

    x, y = x.float(), y.float()
    mu1, mu2 = blur(x), blur(y)
    s11, s22, s12 = blur(x * x) - mu1 ** 2, blur(y * y) - mu2 ** 2, blur(x * y) - mu1 * mu2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = (2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
    return m.flatten(1).mean(1)
