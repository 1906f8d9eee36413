"""Reconstruction from the frozen code y (Table 4 "MS-SSIM" column; Hjelm et al. 2019, Sec. 4).

Decoder (Hjelm et al. 2019): Linear 64 -> 512x4x4 (no bias), BN, ReLU; transposed convs 4x4/2/1 to 256,
128, 64 channels (each BN, ReLU); conv 3x3 (pad 1) to 3 channels; tanh. Trained with MSE on the
frozen codes of the training split (Adam ``lr`` 1e-4, betas (0.5, 0.999) as in the paper's
Appendix A, batch 64, last partial batch dropped, seeded order; ``max_train`` > 0 trains on a seeded
subset of that many images); the codes are standardised per dimension with the whole training
split's statistics first (an invertible per-dimension map). Metrics on the test
split, images and reconstructions in [-1, 1]:

- ``mse``: mean squared error per pixel and channel, in the [-1, 1] pixel scale.
- ``ssim``: single-scale SSIM (Wang et al. 2004) via ``pytorch_msssim.ssim``: Gaussian window
  11x11, sigma 1.5, K = (0.01, 0.03), valid convolution, on images mapped to [0, 1] with
  data range 1 (equivalently range 2.0 on [-1, 1]): the standard metric, shown beside the
  paper's column without a Δ.
- ``ms_ssim``: a multi-scale SSIM (Wang et al. 2003) that runs on 32x32 images: ``ms_scales`` = 3
  scales (32, 16, 8 px, 2x2 average pooling between them), Gaussian window ``ms_win`` = 7x7 with
  sigma 1.5 at every scale, contrast-structure terms at scales 1..2 and the full SSIM at scale 3,
  each clipped at 0, with the first three standard weights (0.0448, 0.2856, 0.3001) renormalised
  to sum to 1: (0.0711, 0.4530, 0.4760). The standard 5-scale 11x11 MS-SSIM needs images larger
  than 160 px (pytorch-msssim asserts it), so it is not reported.
- ``ssim_released``: the released DIM code's metric reproduced with its bug (:func:`released_ssim`:
  11x11 window with sigma 11, zero padding 5, [0, 1] constants on [-1, 1] data): the released
  code computes this single-scale SSIM and the paper reports it as "MS-SSIM" (Hjelm et al. 2019,
  Table 4), so Table 4 reads the paper's number and Δ against it (``repeval.report.tables.scales``).

A PNG of the first ``grid_n`` test images (top row) over their reconstructions (bottom row) is
written to ``<artifact_stem>.png`` (the runner sets results/<dataset>/recon/<model>; :func:`save_grid`).
"""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repeval.estimators.nets import deconv_bn_relu
from repeval.plugin.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore
from repeval.seeding import derive_seed, generator
from repeval.estimators.ssim import MS_SSIM_WEIGHTS, ms_ssim, released_ssim, ssim, to_unit


@dataclass(frozen=True)
class ReconConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ms_scales: int = 3
    ms_win: int = 7
    ms_sigma: float = 1.5
    max_train: int = 0            # train the decoder on a seeded subset of this many images (0 = all)
    width: int = 512              # channels after the linear layer (the released code: 512), halved per deconv
    grid_n: int = 16              # test images in the PNG grid written to <artifact_stem>.png

    def __post_init__(self):
        if not 1 <= self.ms_scales <= len(MS_SSIM_WEIGHTS):
            raise ValueError(f"recon.ms_scales must be in 1..5, got {self.ms_scales}")
        if self.ms_win % 2 != 1:
            raise ValueError(f"recon.ms_win must be odd, got {self.ms_win}")
        if self.width < 8 or self.width % 8:
            raise ValueError(f"recon.width must be a positive multiple of 8, got {self.width}")


class ReconDecoder(nn.Module):
    """y -> image: Linear to W x (H/8) x (W/8), BN, ReLU, 3 x (deconv, BN, ReLU) halving the channels,
    conv 3x3, tanh. ``width`` W = 512 is the paper's decoder (512-256-128-64; Hjelm et al. 2019, App. A)."""

    def __init__(self, z_dim: int, out_shape: tuple[int, int, int] = (3, 32, 32), width: int = 512):
        super().__init__()
        c, h, w = out_shape
        if h % 8 or w % 8:
            raise ValueError(f"reconstruction decoder needs image sides divisible by 8, got {h}x{w}")
        self.start = (width, h // 8, w // 8)
        self.fc = nn.Sequential(nn.Linear(z_dim, width * (h // 8) * (w // 8), bias=False),
                                nn.BatchNorm1d(width * (h // 8) * (w // 8)), nn.ReLU(inplace=True))
        self.net = nn.Sequential(deconv_bn_relu(width, width // 2), deconv_bn_relu(width // 2, width // 4),
                                 deconv_bn_relu(width // 4, width // 8),
                                 nn.Conv2d(width // 8, c, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.start))


def save_grid(images: torch.Tensor, recons: torch.Tensor, path: str | Path) -> Path:
    """PNG grid: ``images`` (top row) over ``recons`` (bottom row), both (n, C, H, W) in [-1, 1]."""
    import io

    from torchvision.utils import save_image

    from repeval.store.storage import atomic_write_bytes
    buf = io.BytesIO()
    n = images.shape[0]
    save_image(to_unit(torch.cat([images, recons]).detach().float().cpu()), buf, format="png", nrow=n, padding=1)
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- protocol

def train_decoder(z: torch.Tensor, x: torch.Tensor, cfg: ReconConfig, *, seed: int) -> tuple[ReconDecoder, float]:
    """Fit the decoder z -> x with MSE (z, x on the target device); returns (decoder, last epoch's mean loss)."""
    dev = z.device
    torch.manual_seed(derive_seed(seed, "recon-init"))
    dec = ReconDecoder(z.shape[1], tuple(x.shape[1:]), cfg.width).to(dev)
    opt = torch.optim.Adam(dec.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    n = z.shape[0]
    bs = min(cfg.batch_size, n)
    epoch_loss = float("nan")
    for epoch in range(cfg.epochs):
        dec.train()
        perm = torch.randperm(n, generator=generator(derive_seed(seed, "recon-shuffle", epoch))).to(dev)
        total, count = torch.zeros((), device=dev), 0
        for s in range(0, n - bs + 1, bs):
            idx = perm[s:s + bs]
            loss = F.mse_loss(dec(z[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            count += 1
        epoch_loss = float(total) / max(1, count)
        if epoch_loss != epoch_loss or epoch_loss == float("inf"):
            raise ProtocolFailure(f"recon decoder loss became {epoch_loss} at epoch {epoch + 1}")
    return dec.eval(), epoch_loss


@torch.no_grad()
def reconstruct(dec: ReconDecoder, z: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    dec.eval()
    return torch.cat([dec(z[s:s + batch_size]) for s in range(0, z.shape[0], batch_size)])


REPORT = Reporting(
    columns=(ReportColumn("4", "ssim", "SSIM", "ssim", fmt=".3f", paper="msssim"),
             ReportColumn("4", "ms_ssim", "MS-SSIM", "ms_ssim", fmt=".3f")),
    title="reconstruction",
    footnote="SSIM = protocol `recon`, metric `ssim`, compared with the paper's column \"MS-SSIM\", which the "
             "released code computes as single-scale SSIM (Hjelm et al. 2019, Sec. 4); MS-SSIM = our metric "
             "`ms_ssim` (no paper counterpart)")


@register_protocol("recon", ReconConfig, order=30, taps="code", needs_images=True, display="Reconstruction", report=REPORT)
def recon_protocol(inp: ProtocolInput, cfg: ReconConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Decoder on frozen y; test ``mse``, ``ssim``, ``ms_ssim`` (3 scales) and ``ssim_released`` (the
    paper's scale)."""
    if inp.train.images is None or inp.test.images is None:
        raise ProtocolFailure("recon needs images (needs_images=True) but the input has none")
    dev = torch.device(device)
    z_tr, z_te = zscore(inp.train.features.float(), inp.test.features.float())   # whole-train statistics
    x_tr = inp.train.images
    if cfg.max_train and z_tr.shape[0] > cfg.max_train:
        keep = torch.randperm(z_tr.shape[0], generator=generator(derive_seed(seed, "recon-subset")))[:cfg.max_train]
        z_tr, x_tr = z_tr[keep], x_tr[keep]
    z_tr, z_te = z_tr.to(dev), z_te.to(dev)
    x_tr, x_te = x_tr.to(dev), inp.test.images.to(dev)
    dec, train_loss = train_decoder(z_tr, x_tr, cfg, seed=seed)
    rec = reconstruct(dec, z_te)
    out = {"mse": float(F.mse_loss(rec, x_te)), "ssim": float(ssim(rec, x_te).mean()),
           "ms_ssim": float(ms_ssim(rec, x_te, cfg.ms_scales, cfg.ms_win, cfg.ms_sigma).mean()),
           "ssim_released": float(released_ssim(rec, x_te).mean()),
           "train_mse": train_loss}
    if inp.artifact_stem is not None:   # results/<dataset>/recon/<model>.png, set by the runner
        k = min(cfg.grid_n, x_te.shape[0])
        save_grid(x_te[:k], rec[:k], Path(f"{inp.artifact_stem}.png"))
    return out
