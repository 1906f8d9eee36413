"""Feature extraction and the feature cache.

Every tap of a frozen encoder is extracted once per (encoder weights hash, dataset fingerprint,
split) and stored as a dict of flattened float32 tensors under ``WORKDIR/features/``; every protocol
reads that cache. A user's encoder is checked here: its forward must return a mapping of tap name
-> tensor with one row per image, or the run stops with a one-line error naming the encoder.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..registry import RegistryError, check_name
from ..store.storage import CheckpointError, load_sealed, save_sealed


class EncoderContractError(TypeError):
    """A user's encoder returned something that is not a mapping of per-image feature tensors."""


def check_taps(out, n: int, name: str) -> "OrderedDict[str, torch.Tensor]":
    """Validate one forward's output against the encoder contract."""
    if not isinstance(out, Mapping) or not out:
        raise EncoderContractError(
            f"encoder '{name}' returned {type(out).__name__}; expected a mapping of tap name -> tensor (N, ...)")
    taps = OrderedDict()
    for k, v in out.items():
        if k == "local":
            continue
        try:
            check_name(k, "tap")
        except RegistryError as e:
            raise EncoderContractError(f"encoder '{name}': {e}") from None
        if not isinstance(v, torch.Tensor) or v.dim() < 2 or v.shape[0] != n:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise EncoderContractError(
                f"encoder '{name}' tap '{k}' has shape {shape}; expected ({n}, ...) for a batch of {n} images")
        taps[str(k)] = v
    return taps


@torch.no_grad()
def tap_names(encoder: nn.Module, sample: torch.Tensor, name: str) -> list[str]:
    """The tap names of ``encoder`` from one forward on ``sample`` (a couple of images)."""
    encoder.eval()
    try:
        out = encoder(sample)
    except RuntimeError as e:  # typically a shape mismatch deep inside the network
        first = (str(e).strip().splitlines() or [""])[0]
        raise EncoderContractError(
            f"encoder '{name}' fails on images of {'x'.join(map(str, sample.shape[1:]))} (C x H x W): "
            f"{first} (does it take {sample.shape[2]}x{sample.shape[3]} px input?)") from None
    return list(check_taps(out, sample.shape[0], name))


@torch.no_grad()
def extract(encoder: nn.Module, x: torch.Tensor, *, name: str = "encoder", batch_size: int = 512,
            device: str | torch.device = "cpu", progress=None) -> dict[str, torch.Tensor]:
    """All taps of ``encoder`` on images ``x``, flattened to (N, D) float32 on CPU."""
    encoder.eval().to(device)
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        for k, v in check_taps(encoder(xb), xb.shape[0], name).items():
            if not torch.isfinite(v).all():
                raise EncoderContractError(f"encoder '{name}' tap '{k}' produced non-finite features")
            chunks.setdefault(k, []).append(v.float().flatten(1).cpu())
        if progress:
            progress(min(start + batch_size, x.shape[0]))
    return {k: torch.cat(v) for k, v in chunks.items()}


def cached_features(cache_dir: Path, key: str, compute, *, refresh: bool = False
                    ) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """Load features for ``key`` from the cache or compute and store them; returns (features, hit),
    (None, False) on a miss when ``compute`` is None.

    Entries are sealed with a checksum (:func:`repeval.store.storage.save_sealed`): an entry that fails
    it, or cannot be read, is recomputed, never trusted. ``refresh`` recomputes in any case."""
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists() and not refresh:
        try:
            return load_sealed(path), True
        except CheckpointError:
            path.unlink(missing_ok=True)
    if compute is None:
        return None, False
    feats = compute()
    save_sealed(path, feats)
    return feats, False
