"""Registering encoders: families trained by repeval, users' modules and pretrained checkpoints.

Four ways in, all ending in the same :data:`repeval.registry.MODELS` entry:

* a family class in ``models/`` decorated with ``@register_model("name", display="Name", **config)``;
* ``register_encoder("name", factory)`` in any file passed with ``--plugin path.py``;
* a checkpoint (a state dict) with ``register_encoder(..., checkpoint="enc.pt")`` or the CLI's
  ``--pretrained name=enc.pt`` (shared encoder architecture);
* a torchvision or timm model with ``register_backbone("r18", "torchvision:resnet18", weights=...)``
  or the CLI's ``--backbone r18=torchvision:resnet18:r18.pt`` (:mod:`repeval.plugin.backbones`).

What identifies an encoder (and so every checkpoint and record made from it) is
:func:`encoder_identity`: for a trained family its class, ``version``, family config, training
config and architecture signature; for an encoder used as built or loaded, the content hash of its
weights; in both cases the content hash of the plugin file that defines it, if it is a user's file.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from ..config import ConfigError, TrainConfig, make_config, to_dict
from ..registry import MODELS, where_defined
from ..store.storage import architecture_signature, file_hash, state_dict_hash
from .backbones import load_encoder_weights
from .family import Family

_PACKAGE_DIRS = tuple(str(Path(__file__).resolve().parents[2] / d) for d in ("repeval", "models", "protocols"))


def _code_hash(source: str | None) -> str | None:
    """Content hash of a user's source file; None for repeval's own code (versioned instead)."""
    if source is None or source.startswith(_PACKAGE_DIRS):
        return None
    try:
        return file_hash(source)
    except OSError:
        return None


def caller_location() -> str:
    """``file:line`` of the first caller outside repeval's own code (a plugin's registration)."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIRS):
        f = f.f_back
    return f"{f.f_code.co_filename}:{f.f_lineno}" if f is not None else "unknown place"


def source_file(obj) -> str | None:
    try:
        return str(Path(inspect.getsourcefile(inspect.unwrap(obj))).resolve())
    except (TypeError, OSError):
        return None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    display: str
    build: Callable[..., Family]     # (train_cfg, n_classes, in_channels, family_config) -> Family
    source: str = "repeval"          # "repeval", "plugin", "pretrained", "backbone"
    section: str = ""                # the family's --set section ("" = none)
    code: str | None = None          # content hash of the user's file that defines it
    input_size: int | None = None    # image side the encoder takes (None: not declared, any size)
    origin: str = field(default="", compare=False)   # where it was registered (file:line, CLI option)

    @property
    def model_section(self) -> str:
        """The section of this registration alone (``dim.dim-g``): it overrides the family's ``dim``."""
        return f"{self.section}.{self.name}"

    def family_config(self, overrides: dict | None = None):
        """The family's resolved frozen config: defaults of this registration, then the overrides of
        its family section (``--set dim.KEY=V``), then of its own (``--set dim.dim-g.KEY=V``)."""
        fam = getattr(self.build, "family", None)
        if fam is None:
            return None
        overrides = overrides or {}
        values = {**self.build.defaults, **overrides.get(self.section, {}), **overrides.get(self.model_section, {})}
        return make_config(fam.Config, values, self.section or self.name)


def register_model(name: str, display: str | None = None, **defaults):
    """Class decorator for a :class:`Family`; ``defaults`` are values of its ``Config``.

    The same class can be registered under several names with different defaults
    (``register_model("beta-vae", "β-VAE", beta=4.0)(VAE)``); ``--set SECTION.KEY=V`` overrides
    them for every registration of the family.
    """
    def deco(cls):
        shown = display or cls.display or name
        section = cls.section or cls.__name__.lower()
        spec_holder = {}

        def build(cfg: TrainConfig, n_classes: int = 10, in_channels: int = 3, fcfg=None) -> Family:
            """``fcfg``: the resolved ``cls.Config`` (:meth:`ModelSpec.family_config`; None: the defaults)."""
            fcfg = spec_holder["spec"].family_config() if fcfg is None else fcfg
            if not isinstance(fcfg, cls.Config):
                raise TypeError(f"{name}: build() takes a resolved {cls.__qualname__}.Config, got {type(fcfg).__name__}")
            fam = cls(cfg, n_classes=n_classes, in_channels=in_channels, **to_dict(fcfg))
            fam.fcfg, fam.display = fcfg, shown
            return fam
        build.__wrapped__ = cls  # so duplicate-name errors point at the class
        build.family, build.defaults = cls, dict(defaults)
        make_config(cls.Config, defaults, f"{name} (register_model)")   # bad defaults fail at import
        code = _code_hash(source_file(cls))
        spec = ModelSpec(name, shown, build, section=section, code=code,
                         source="repeval" if code is None else "plugin", input_size=cls.input_size,
                         origin=where_defined(cls))
        spec_holder["spec"] = spec
        MODELS.register(name, spec, order=cls.order)
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
        """What identifies this encoder beyond its weights (overridden by adapters, e.g. backbones)."""
        describe = getattr(self.encoder, "describe", None)
        return {"class": type(self.encoder).__qualname__, **(describe() if callable(describe) else {})}


def register_encoder(name: str, factory: Callable[[], nn.Module], *, checkpoint: str | Path | None = None,
                     display: str | None = None, source: str = "plugin", input_size: int | None = None,
                     origin: str | None = None) -> ModelSpec:
    """Register a user's encoder (any ``nn.Module`` returning a mapping of taps) under ``name``.

    ``input_size``: the image side it takes (default: the factory's ``input_size`` attribute, if any);
    ``imagefolder:`` data is resized to it. ``origin`` says where it was registered (default: the
    caller's file and line), for a duplicate name's error."""
    shown = display or name
    input_size = input_size or getattr(factory, "input_size", None) or None   # 0: not declared
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1):
        raise ConfigError(f"register_encoder({name!r}): input_size must be a positive integer, got {input_size!r}")

    def build(cfg: TrainConfig, n_classes: int = 10, in_channels: int = 3, fcfg=None) -> Family:
        fam = FrozenEncoder(cfg, factory(), checkpoint, n_classes=n_classes)
        fam.display = shown
        return fam
    build.__wrapped__ = factory
    spec = ModelSpec(name, shown, build, source, code=_code_hash(source_file(factory)), input_size=input_size,
                     origin=origin or caller_location())
    MODELS.register(name, spec)
    return spec


def register_backbone(name: str, backbone: str, *, weights: str | Path | None = None,
                      taps: list[str] | tuple[str, ...] | None = None, input_size: int | None = None,
                      normalize: str | tuple = "auto", pool: bool = True, download: bool = False,
                      display: str | None = None) -> ModelSpec:
    """Register a torchvision/timm model (``"torchvision:resnet18"``, ``"timm:resnet18"``) as a frozen
    encoder ``name``; see :class:`repeval.plugin.backbones.BackboneSpec` for the arguments.

    Registering the same name again with the same settings is a no-op; other settings are an error.
    """
    from .backbones import BackboneSpec, split_backbone

    source, arch, file = split_backbone(backbone, f"register_backbone({name!r})")
    spec = BackboneSpec(source, arch, str(weights) if weights is not None else file, tuple(taps or ()),
                        int(input_size or 0), normalize, pool, download)
    return register_backbone_spec(name, spec, display)


def register_backbone_spec(name: str, spec, display: str | None = None, origin: str | None = None) -> ModelSpec:
    """Register a checked :class:`repeval.plugin.backbones.BackboneSpec` (the factory of its encoder)."""
    spec.check()
    if name in MODELS and getattr(MODELS.get(name).build, "__wrapped__", None) == spec:
        return MODELS.get(name)
    return register_encoder(name, spec, display=display, source="backbone", origin=origin or caller_location())


def encoder_identity(spec: ModelSpec, family: Family) -> dict:
    """Everything that can change the numbers computed from this model's encoder (see module doc).

    Call on the freshly built family (before training or loading a training checkpoint)."""
    ident = {"family": type(family).__qualname__, "version": family.version, "code": spec.code}
    if family.trains:
        fcfg = getattr(family, "fcfg", None)
        ident.update(kind="trained", config=to_dict(fcfg) if fcfg is not None else {},
                     train=family.cfg.identity(), arch=architecture_signature(family.state_dict()))
    else:
        ident.update(kind="frozen", weights=state_dict_hash(family.encoder.state_dict()),
                     arch=architecture_signature(family.encoder.state_dict()),
                     describe=family.describe() if hasattr(family, "describe") else {})
        if not isinstance(family, FrozenEncoder):   # seeded initialisation (the random-init floor)
            ident["seed"] = family.cfg.seed
    return ident


def family_sections() -> dict[str, type]:
    """``--set`` section name -> the family Config class, over every registered family: the family's
    section (``dim``) and each registration's own (``dim.dim-g``)."""
    out = {}
    for n in MODELS:
        spec = MODELS.get(n)
        fam = getattr(spec.build, "family", None)
        if fam is not None and spec.section:
            out[spec.section] = out[spec.model_section] = fam.Config
    return out


DEFAULT_INPUT_SIZE = 32   # the shared encoder's; for encoders that declare no input size


def input_size_groups(models: list[str]) -> list[tuple[int, list[str]]]:
    """The requested models grouped by the image side they take (:attr:`ModelSpec.input_size`, else
    :data:`DEFAULT_INPUT_SIZE`), in order of first appearance: ``imagefolder:`` data is loaded once
    per group, resized to that size."""
    groups: dict[int, list[str]] = {}
    for m in models:
        groups.setdefault(MODELS.get(m).input_size or DEFAULT_INPUT_SIZE, []).append(m)
    return list(groups.items())
