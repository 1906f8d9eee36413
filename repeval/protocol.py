"""The protocol contract: a function of cached features and a frozen config -> dict of numbers.

A protocol is registered with :func:`register_protocol`. The runner calls it once per
(model, dataset, tap, seed) with a :class:`ProtocolInput` built from the feature cache; images are
included only for protocols that declare ``needs_images`` (reconstruction, MINE).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .registry import PROTOCOLS


@dataclass(frozen=True)
class Split:
    features: torch.Tensor            # (N, D) float32, flattened tap, on CPU
    labels: torch.Tensor              # (N,) int64
    images: torch.Tensor | None = None  # (N, C, H, W) float in [-1, 1], when needs_images


@dataclass(frozen=True)
class ProtocolInput:
    tap: str
    train: Split
    test: Split
    n_classes: int
    artifact_stem: Path | None = None  # e.g. results/<dataset>/recon/<model>: where figures may go


@dataclass(frozen=True)
class ProtocolSpec:
    """``taps``: "all" (one record per tap, e.g. probes) or "code" (the representation tap y only).

    ``seeds`` is the default number of seeds (Table 4's SVM uses five). ``version`` is bumped
    whenever the protocol's code changes what it computes: it is part of every record's identity.
    ``every_epoch``: run at every evaluation epoch of a learning curve (cheap probes), not only at
    the last one.
    """

    name: str
    fn: Callable[..., dict]
    config_cls: type
    taps: str = "all"
    seeds: int = 1
    needs_images: bool = False
    display: str = ""
    version: int = 1
    every_epoch: bool = False


def register_protocol(name: str, config_cls: type, *, taps: str = "all", seeds: int = 1,
                      needs_images: bool = False, display: str = "", version: int = 1,
                      every_epoch: bool = False):
    """Decorator: ``@register_protocol("svm", SVMConfig, seeds=5)`` on ``fn(inp, cfg, *, seed, device)``."""
    if taps not in ("all", "code"):
        raise ValueError(f"taps must be 'all' or 'code', got {taps!r}")

    def deco(fn):
        PROTOCOLS.register(name, ProtocolSpec(name, fn, config_cls, taps, seeds, needs_images, display or name,
                                              version, every_epoch))
        return fn
    return deco


def code_tap(taps: list[str]) -> str:
    """The representation tap for code-level protocols: ``y`` when present, else the last tap."""
    return "y" if "y" in taps else taps[-1]


class ProtocolFailure(RuntimeError):
    """A protocol could not produce a number (diverged, non-finite loss)."""


def zscore(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-8) -> list[torch.Tensor]:
    """Per-column (x - mean) / std with statistics of ``train`` (sample std); constant columns get std 1.

    Returns ``[train, *others]`` standardised. Shared by the protocols that fit a network on codes."""
    mu = train.mean(0, keepdim=True)
    sd = train.std(0, keepdim=True)
    sd = torch.where(sd > eps, sd, torch.ones_like(sd))
    return [(t - mu) / sd for t in (train, *others)]
