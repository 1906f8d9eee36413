"""The optimiser every trained network in repeval uses (families, probes, critics)."""
from __future__ import annotations

import torch


def fused_adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel on CPU/CUDA (the same update, ~4x faster than the default foreach
    path on CPU: 21 vs 98 ms for 13.6M parameters); the default path elsewhere."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)
