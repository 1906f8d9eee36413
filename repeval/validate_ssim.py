"""Which SSIM-type metrics ``repeval validate`` checks: the reconstruction protocol's own functions
(protocols/recon.py) when that protocol is installed, else pytorch-msssim's single-scale SSIM with
the standard settings (Gaussian 11x11 window, sigma 1.5, images mapped from [-1, 1] to [0, 1]).
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

RECON_METRICS = ("ssim_metric", "ms_ssim_metric", "released_ssim_metric")


def _fallback_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from pytorch_msssim import ssim
    return ssim((a + 1) / 2, (b + 1) / 2, data_range=1.0, win_size=11, win_sigma=1.5)


def metric_functions() -> tuple[dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], str]:
    """(name -> fn(perturbed, original) on [-1, 1] images returning a scalar, provenance note)."""
    try:
        recon = importlib.import_module("repeval.protocols.recon")
    except ModuleNotFoundError as e:
        if e.name != "repeval.protocols.recon":
            raise
        return {"ssim": _fallback_ssim}, "pytorch_msssim.ssim (11x11, sigma 1.5; protocols/recon.py absent)"
    fns = {name.removesuffix("_metric"): getattr(recon, name) for name in RECON_METRICS if hasattr(recon, name)}
    if not fns:
        return {"ssim": _fallback_ssim}, "pytorch_msssim.ssim (11x11, sigma 1.5; recon exposes no *_metric)"
    return fns, "protocols/recon.py: " + ", ".join(f"{n}_metric" for n in fns)
