"""Registering encoders: families trained by repeval, users' modules and pretrained checkpoints.

Three ways in, all ending in the same :data:`repeval.registry.MODELS` entry:

* a family class in ``models/`` decorated with ``@register_model("name", display="Name")``;
* ``register_encoder("name", factory)`` in any file passed with ``--plugin path.py``;
* a checkpoint (a state dict) with ``register_encoder(..., checkpoint="enc.pt")`` or the CLI's
  ``--pretrained name=enc.pt`` (shared encoder architecture).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from .config import TrainConfig
from .registry import MODELS
from .storage import CheckpointError, load_checkpoint
from .train import Family


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display: str
    build: Callable[[TrainConfig, int, int], Family]   # (cfg, n_classes, in_channels) -> Family
    source: str = "repeval"                            # "repeval", "plugin", "pretrained"


def register_model(name: str, display: str | None = None, **kwargs):
    """Class decorator for a :class:`Family`; ``kwargs`` are passed to its constructor.

    The same class can be registered under several names with different kwargs
    (``register_model("beta-vae", "β-VAE", beta=4.0)(VAE)``).
    """
    def deco(cls):
        shown = display or cls.display or name

        def build(cfg: TrainConfig, n_classes: int = 10, in_channels: int = 3) -> Family:
            fam = cls(cfg, n_classes=n_classes, in_channels=in_channels, **kwargs)
            fam.display = shown
            return fam
        build.__wrapped__ = cls  # so duplicate-name errors point at the class
        MODELS.register(name, ModelSpec(name, shown, build))
        return cls
    return deco


class FrozenEncoder(Family):
    """A family that does not train: the encoder as built (and loaded from ``checkpoint``)."""

    trains = False

    def __init__(self, cfg: TrainConfig, encoder: nn.Module, checkpoint: str | Path | None = None,
                 n_classes: int = 10):
        super().__init__(cfg, n_classes=n_classes)
        self.encoder = encoder
        self.checkpoint = str(checkpoint) if checkpoint else None
        if checkpoint is not None:
            load_encoder_weights(encoder, checkpoint)

    def hparams(self) -> dict:
        return {"checkpoint": self.checkpoint, "class": type(self.encoder).__qualname__}


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a state dict (optionally nested under 'encoder' or 'state_dict') with a one-line error."""
    state = load_checkpoint(path)
    if isinstance(state, dict):
        for key in ("encoder", "state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds {type(state).__name__}, not a state dict")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {type(encoder).__name__}: "
                              + " ".join(str(e).split())[:300]) from None


def register_encoder(name: str, factory: Callable[[], nn.Module], *, checkpoint: str | Path | None = None,
                     display: str | None = None, source: str = "plugin") -> ModelSpec:
    """Register a user's encoder (any ``nn.Module`` returning a mapping of taps) under ``name``."""
    shown = display or name

    def build(cfg: TrainConfig, n_classes: int = 10, in_channels: int = 3) -> Family:
        fam = FrozenEncoder(cfg, factory(), checkpoint, n_classes=n_classes)
        fam.display = shown
        return fam
    build.__wrapped__ = factory
    spec = ModelSpec(name, shown, build, source)
    MODELS.register(name, spec)
    return spec
