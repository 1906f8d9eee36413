"""Registering encoders: families trained by repeval, users' modules and pretrained checkpoints.

Three ways in, all ending in the same :data:`repeval.registry.MODELS` entry:

* a family class in ``models/`` decorated with ``@register_model("name", display="Name")``;
* ``register_encoder("name", factory)`` in any file passed with ``--plugin path.py``;
* a checkpoint (a state dict) with ``register_encoder(..., checkpoint="enc.pt")`` or the CLI's
  ``--pretrained name=enc.pt`` (shared encoder architecture);
* a torchvision or timm model with ``register_backbone("r18", "torchvision:resnet18", weights=...)``
  or the CLI's ``--backbone r18=torchvision:resnet18:r18.pt`` (:mod:`repeval.backbones`).
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
    source: str = "repeval"                            # "repeval", "plugin", "pretrained", "backbone"


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

    def describe(self) -> dict:
        """What this frozen encoder is, for its records: class and checkpoint, plus the encoder's own
        ``describe()`` when it has one (a backbone: architecture, weights' hash, taps, input adaptation)."""
        own = getattr(self.encoder, "describe", None)
        return {"checkpoint": self.checkpoint, "class": type(self.encoder).__qualname__,
                **(own() if callable(own) else {})}

    def hparams(self) -> dict:
        return self.describe()


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


def register_backbone(name: str, backbone: str, *, weights: str | Path | None = None,
                      taps: list[str] | tuple[str, ...] | None = None, input_size: int | None = None,
                      normalize: str | tuple = "auto", pool: bool = True, download: bool = False,
                      display: str | None = None) -> ModelSpec:
    """Register a torchvision/timm model (``"torchvision:resnet18"``, ``"timm:resnet18"``) as a frozen
    encoder ``name``; see :class:`repeval.backbones.BackboneSpec` for the arguments.

    Registering the same name again with the same settings is a no-op; other settings are an error.
    """
    from .backbones import BackboneSpec, split_backbone

    source, arch, file = split_backbone(backbone, f"register_backbone({name!r})")
    spec = BackboneSpec(source, arch, str(weights) if weights is not None else file, tuple(taps or ()),
                        int(input_size or 0), normalize, pool, download)
    return register_backbone_spec(name, spec, display)


def register_backbone_spec(name: str, spec, display: str | None = None) -> ModelSpec:
    """Register a checked :class:`repeval.backbones.BackboneSpec` (the factory of its encoder)."""
    spec.check()
    if name in MODELS and getattr(MODELS.get(name).build, "__wrapped__", None) == spec:
        return MODELS.get(name)
    return register_encoder(name, spec, display=display, source="backbone")
