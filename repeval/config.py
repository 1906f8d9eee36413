"""Frozen configuration dataclasses, strict overrides and stable hashing.

Every setting that can change a number lives in a frozen dataclass, is recorded in full in each
result record, and enters that record's config hash. Overrides are strict: an unknown key is a
one-line error naming the key, where it came from, and the valid keys.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .registry import did_you_mean


class ConfigError(ValueError):
    """A bad configuration key or value."""


@dataclass(frozen=True)
class TrainConfig:
    """Encoder training shared by every family (Hjelm et al. 2019, App. A): Adam 1e-4, betas
    (0.5, 0.999), batch 64. Family-specific settings live in each family's own config section.

    ``epochs`` is how far to train; ``eval_epochs`` lists the epochs at which the encoder is
    evaluated (default: only the last). Neither enters the identity of a checkpoint: training is
    reseeded per epoch, so the encoder after epoch e is the same whether the run stops at e or goes on.
    """

    epochs: int = field(default=1000, metadata={"min": 0})
    eval_epochs: tuple[int, ...] = field(default=(), metadata={"min_len": 0})
    batch_size: int = 64
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    precision: str = "fp32"       # "fp32" or "bf16" (autocast): recorded, never silent
    seed: int = field(default=0, metadata={"min": 0})   # encoder initialisation and training order
    max_train: int = field(default=0, metadata={"min": 0})  # 0 = whole training split, else a seeded subset

    def __post_init__(self):
        check_ranges(self, "train")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'fp32' or 'bf16', got {self.precision!r}")
        for k in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ConfigError(f"train.{k} must be in [0, 1), got {getattr(self, k)}")
        if 0 < self.max_train < self.batch_size:
            raise ConfigError(f"train.max_train={self.max_train} is smaller than one batch "
                              f"(train.batch_size={self.batch_size})")
        bad = [e for e in self.eval_epochs if not 1 <= e <= self.epochs]
        if bad or list(self.eval_epochs) != sorted(set(self.eval_epochs)):
            raise ConfigError(f"train.eval_epochs must be increasing epochs in [1, train.epochs={self.epochs}], "
                              f"got {self.eval_epochs}")

    def eval_points(self) -> tuple[int, ...]:
        """The epochs at which the encoder is evaluated: ``eval_epochs`` plus the last epoch."""
        return tuple(sorted({*self.eval_epochs, self.epochs}))

    def identity(self) -> dict:
        """The fields that determine the weights after any given epoch (not how many epochs run)."""
        d = dataclasses.asdict(self)
        del d["epochs"], d["eval_epochs"]
        return d


# Numeric fields that must be strictly positive (ints >= 1, floats > 0) unless their metadata says
# otherwise: these names and their ``*_name`` forms, but not ``min_*`` floors (``min_steps=0`` is valid).
POSITIVE = ("epochs", "steps", "batch_size", "lr", "hidden", "width", "units", "folds", "shuffles",
            "patience", "k", "seeds")


# Upper bounds on counts and sizes (by field name or ``*_name``), far above any budget in a preset and
# low enough that a typo (an extra zero or three) is an error before any work, not a failed allocation.
MAXIMA = {"hidden": 1 << 16, "width": 1 << 16, "units": 1 << 16, "channels": 1 << 16, "features": 1 << 16,
          "epochs": 100_000, "steps": 10_000_000, "batch_size": 1 << 20, "chunk_size": 1 << 20, "k": 1 << 20,
          "layers": 1000, "shuffles": 10_000, "seeds": 100, "folds": 1000, "max_iter": 1_000_000,
          "history_size": 10_000, "max_cycles": 10_000, "grid_n": 1024, "scales": 16, "win": 1023}
MAX_INT = 2 ** 31 - 1   # any other integer setting
MAX_LEN = 1000          # entries of a list setting


def _maximum(name: str) -> int | None:
    return next((m for n, m in MAXIMA.items() if name == n or name.endswith("_" + n)), None)


def check_types(cfg: Any, where: str, hints: Mapping[str, Any] | None = None) -> None:
    """Every field holds its annotated type (``int``, ``float``, ``str``, ``bool`` or a tuple of
    them): a preset, a plugin's defaults or a JSON value cannot smuggle in a string or a list."""
    hints = typing.get_type_hints(type(cfg)) if hints is None else hints
    for f in fields(cfg):
        typ, v = hints.get(f.name), getattr(cfg, f.name)
        inner = typing.get_args(typ)[0] if typing.get_origin(typ) is tuple and typing.get_args(typ) else None
        for t, x in ([(tuple, v)] + [(inner, e) for e in v] if inner is not None and isinstance(v, tuple)
                     else [(typing.get_origin(typ) or typ, v)]):
            ok = (not isinstance(t, type) or isinstance(x, t) or (t is float and isinstance(x, int)))
            if t in (int, float) and isinstance(x, bool):
                ok = False
            if not ok:
                raise ConfigError(f"{where}.{f.name} must be {getattr(typ, '__name__', typ)}, got {v!r}")


def check_ranges(cfg: Any, where: str) -> None:
    """Every numeric field finite; the :data:`POSITIVE` ones above zero; a field with
    ``metadata={"min": m}`` at least m; counts and sizes at most their :data:`MAXIMA` (any integer at
    most :data:`MAX_INT`); a tuple non-empty (unless ``metadata={"min_len": 0}``) and at most
    :data:`MAX_LEN` long. Called for every config by :func:`make_config`, before any data is loaded,
    so a value that makes no sense is a one-line error, not an empty result or a failed record."""
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, tuple) and not f.metadata.get("min_len", 1) <= len(v) <= MAX_LEN:
            raise ConfigError(f"{where}.{f.name} needs {f.metadata.get('min_len', 1)} to {MAX_LEN} values, "
                              f"got {len(v)}")
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                continue
            if not math.isfinite(x):
                raise ConfigError(f"{where}.{f.name} must be a finite number, got {v}")
            positive = not f.name.startswith("min_") and any(f.name == n or f.name.endswith("_" + n)
                                                             for n in POSITIVE)
            if "min" in f.metadata and x < f.metadata["min"]:
                raise ConfigError(f"{where}.{f.name} must be >= {f.metadata['min']}, got {v}")
            if positive and "min" not in f.metadata and (x < 1 if isinstance(x, int) else x <= 0):
                raise ConfigError(f"{where}.{f.name} must be {'>= 1' if isinstance(x, int) else '> 0'}, got {v}")
            top = _maximum(f.name) or (MAX_INT if isinstance(x, int) else None)
            if top is not None and x > top:
                raise ConfigError(f"{where}.{f.name} must be <= {top}, got {v}")


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a string from the command line (or a JSON value) to the field's type."""
    origin = typing.get_origin(typ)
    if isinstance(typ, str):  # postponed annotations
        typ = {"int": int, "float": float, "str": str, "bool": bool}.get(typ, typ)
    try:
        if typ is bool and isinstance(value, str):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if typ in (int, float, str, bool):
            return typ(value)
        if origin is tuple or (isinstance(typ, str) and typ.startswith("tuple")) or isinstance(value, (list, tuple)):
            if isinstance(value, str):
                value = [v for v in value.strip("()[]").split(",") if v.strip()]
            inner = typing.get_args(typ)[0] if typing.get_args(typ) else float
            inner = inner if inner in (int, float, str) else float
            return tuple(inner(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(typ, '__name__', typ)}") from None
    return value


def make_config(cls: type, overrides: Mapping[str, Any] | None = None, where: str = "config") -> Any:
    """Instantiate the frozen dataclass ``cls`` with ``overrides``; unknown keys are an error."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    bad = [k for k in overrides if k not in valid]
    if bad:
        raise ConfigError(f"bad config key '{where}.{bad[0]}'{did_you_mean(bad[0], valid)}; "
                          f"valid keys: {', '.join(valid)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in overrides.items()}
    try:
        cfg = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    check_types(cfg, where, hints)
    check_ranges(cfg, where)
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able structure (dataclasses are converted)."""
    def default(o):
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"not hashable as config: {type(o).__name__}")
    blob = json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["train.epochs=3", "dim.dim-g.critic_units=5"]`` -> ``{"train": {"epochs": "3"},
    "dim.dim-g": {"critic_units": "5"}}``: the key is the part after the last dot (keys have none),
    the section the part before it (a family's model-specific section is ``SECTION.MODEL``)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.rpartition(".")
        if not sep or not dot or not name.strip() or not section.strip():
            raise ConfigError(f"--set expects SECTION.KEY=VALUE (e.g. train.epochs=3), got {item!r}")
        out.setdefault(section.strip(), {})[name.strip()] = value.strip()
    return out


def merge_overrides(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Section-wise merge, later layers winning per key (a config file, then ``--set``)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for sec, kv in layer.items():
            out.setdefault(sec, {}).update(kv)
    return out


def format_sections(sections: Mapping[str, Any], top: Mapping[str, Any] | None = None) -> str:
    """Config sections (name -> frozen dataclass or mapping) as TOML (values in JSON syntax, which
    TOML reads for strings, numbers, booleans and arrays), after the top-level keys ``top``; a None
    value (TOML has no null) is written as a comment, so that reading the file back leaves it unset."""
    def line(k: str, v: Any) -> str:
        return f"# {k} = None (unset)" if v is None else f"{k} = {json.dumps(v)}"
    out = [line(k, v) for k, v in (top or {}).items()] + ([""] if top else [])
    for name, cfg in sections.items():
        out.append(f"[{name}]")
        out += [line(k, v) for k, v in to_dict(cfg).items()]
        out.append("")
    return "\n".join(out).rstrip()
