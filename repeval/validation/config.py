"""Settings of ``repeval validate`` (frozen; recorded in full and hashed).

A :class:`ValidateConfig` holds the base ``seed``, the ``checks`` to run, the MINE options every MI
check shares (:class:`MineOptions`, passed to ``repeval.protocols.mine.estimate_mi``) and, per
check, that check's own frozen ``Settings`` (its budget and stated tolerances, defined in the check's
module), so a PASS always says against what it passed. Two budgets: :func:`full_config` (the
committed ``results/validation`` run) and :func:`quick_config` (``--quick``: each check's ``quick``
overrides and :data:`QUICK_MINE`; about a minute of CPU time, half a minute on 2 cores with a
worker per core).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import ConfigError, make_config
from .registry import check_names, get_check


@dataclass(frozen=True)
class MineOptions:
    """Options for ``repeval.protocols.mine.estimate_mi`` (MINEConfig fields + ``folds``)."""
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    lr_final: float = 1e-4
    hidden: int = 128
    x_features: int = 64
    folds: int = 2

    def options(self, device: str) -> dict:
        """Keyword options for ``estimate_mi`` / ``estimate_mi_details``."""
        return {**dataclasses.asdict(self), "device": device}


QUICK_MINE = {"steps": 400, "batch_size": 512, "lr": 2e-3, "lr_final": 5e-4, "folds": 1}
"""``--quick``'s MINE budget: fewer, larger steps and one held-out split instead of two-fold
cross-fitting (half the critics; every check still passes, the tightest at 37 % of its tolerance).
"""


@dataclass(frozen=True)
class ValidateConfig:
    seed: int = 0
    checks: tuple[str, ...] = ()                  # () = every registered check, in order
    mine: MineOptions = MineOptions()
    settings: tuple[tuple[str, Any], ...] = ()    # (check, its Settings); missing: the full defaults

    def __post_init__(self):
        checks = tuple(self.checks) or check_names()
        given = dict(self.settings)
        settings = []
        for name in checks:
            chk = get_check(name)
            s = given[name] if name in given else chk.Settings()
            if not isinstance(s, chk.Settings):
                raise ConfigError(f"validate.{name}: settings must be a {chk.Settings.__name__}, got {type(s).__name__}")
            settings.append((name, s))
        object.__setattr__(self, "checks", checks)
        object.__setattr__(self, "settings", tuple(settings))

    def of(self, name: str) -> Any:
        """The ``Settings`` of check ``name``."""
        return dict(self.settings)[name]

    def to_dict(self) -> dict:
        """JSON-able form (recorded in summary.json and hashed)."""
        return {"seed": self.seed, "checks": list(self.checks),
                "mine": dataclasses.asdict(self.mine),
                "settings": {name: dataclasses.asdict(s) for name, s in self.settings}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidateConfig:
        """Inverse of :meth:`to_dict` (strict keys)."""
        keys = {"seed", "checks", "mine", "settings"}
        if set(d) != keys:
            raise ConfigError(f"validate config: expected the keys {', '.join(sorted(keys))}, got "
                              f"{len(d)} keys (written by an older repeval? rerun repeval validate)")
        settings = tuple((name, make_config(get_check(name).Settings, s, where=f"validate.{name}"))
                         for name, s in d["settings"].items())
        return cls(seed=int(d["seed"]), checks=tuple(d["checks"]),
                   mine=make_config(MineOptions, d["mine"], where="validate.mine"), settings=settings)


def _build(quick: bool, overrides: dict) -> ValidateConfig:
    """``overrides``: ``seed``, ``checks``, ``mine`` (a dict of MineOptions fields) and, per check
    name, a dict of that check's Settings fields (applied over its quick overrides when ``quick``)."""
    over = dict(overrides)
    seed, checks = over.pop("seed", 0), tuple(over.pop("checks", ()) or check_names())
    mine = make_config(MineOptions, {**(QUICK_MINE if quick else {}), **over.pop("mine", {})}, where="validate.mine")
    bad = [k for k in over if k not in check_names()]
    if bad:
        raise ConfigError(f"bad validate config key '{bad[0]}'; valid keys: seed, checks, mine, "
                          + ", ".join(check_names()))
    settings = {}
    for name in dict.fromkeys(checks + tuple(over)):   # overrides of checks not run are checked too
        chk = get_check(name)
        settings[name] = make_config(chk.Settings, {**(chk.quick if quick else {}), **over.get(name, {})},
                                     where=f"validate.{name}")
    return ValidateConfig(seed=seed, checks=checks, mine=mine,
                          settings=tuple((n, settings[n]) for n in checks))


def full_config(**overrides) -> ValidateConfig:
    """The committed run's budget (see :func:`_build` for ``overrides``)."""
    return _build(False, overrides)


def quick_config(**overrides) -> ValidateConfig:
    """Reduced grids and budgets for ``--quick`` (see :func:`_build` for ``overrides``)."""
    return _build(True, overrides)
