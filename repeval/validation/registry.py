"""The one registry of ``repeval validate`` checks.

A check is one module: a subclass of :class:`Check` decorated with ``@register_check(name)``, holding
its settings and tolerances (a frozen ``Settings`` dataclass and its ``quick`` overrides), its
measurement, its verdicts, its column meanings, its extra tables and its plot. The built-in checks
are the modules of :mod:`repeval.validation.checks`, found by listing that package, so adding a
check is adding one file there; a check in a user's file registers itself the same way and runs with
``repeval --plugin FILE.py validate``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from ..registry import Registry, RegistryError, discover
from .verdicts import Verdict

ValidateConfig = Any   # repeval.validation.config.ValidateConfig, which imports this module

Log = Callable[[str], None]


@dataclass(frozen=True)
class NoSettings:
    """Settings of a check that has none."""


@dataclass
class CheckResult:
    name: str
    rows: list[dict]
    columns: dict[str, str]                     # column -> meaning, units
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    info: dict = field(default_factory=dict)    # measured facts the verdicts/plots need (e.g. log K)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


class Check:
    """Base class of a validation check; subclass it and decorate with :func:`register_check`.

    Override :meth:`measure` and :meth:`judge`; optionally :meth:`plot`, :meth:`tables` and
    :meth:`column_meanings` (default: the ``columns`` mapping).
    """
    name: ClassVar[str] = ""
    order: ClassVar[int] = 100                  # position in the default check order
    Settings: ClassVar[type] = NoSettings       # frozen dataclass: budget and stated tolerances
    quick: ClassVar[Mapping[str, Any]] = {}     # Settings overrides for ``--quick``
    columns: ClassVar[Mapping[str, str]] = {}   # table column -> meaning, units

    def measure(self, cfg: ValidateConfig, s: Any, device: str, log: Log) -> tuple[list[dict], dict]:
        """Run the estimators; return the table rows and ``info`` (facts the verdicts/plots need,
        ``info["notes"]``: extra report lines). No file I/O."""
        raise NotImplementedError

    def judge(self, cfg: ValidateConfig, s: Any, rows: list[dict], info: dict) -> tuple[list[Verdict], list[str]]:
        """Verdicts against the stated tolerances in ``s`` and notes; a pure function of ``rows``."""
        raise NotImplementedError

    def column_meanings(self, rows: list[dict]) -> dict[str, str]:
        return dict(self.columns)

    def tables(self, res: CheckResult) -> dict[str, tuple[str, list[dict]]]:
        """Extra tables derived from the rows: title -> (file stem, rows); written as CSV and
        appended to the check's Markdown."""
        return {}

    def plot(self, res: CheckResult, out: Path) -> list[Path]:
        """Write the check's figure(s) under ``out``; return their paths."""
        return []


CHECKS: Registry[Check] = Registry("check")


def register_check(name: str, *, order: int = 100):
    """Class decorator: register an instance of a :class:`Check` subclass under ``name``."""
    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Check)):
            raise RegistryError(f"check '{name}': {cls!r} is not a subclass of repeval.validation.Check")
        if not (dataclasses.is_dataclass(cls.Settings) and cls.Settings.__dataclass_params__.frozen):
            raise RegistryError(f"check '{name}': Settings must be a frozen dataclass")
        cls.name, cls.order = name, order
        CHECKS.register(name, cls())
        return cls
    return deco


def load_builtin_checks() -> None:
    """Import every module of :mod:`repeval.validation.checks` and every entry point of group
    ``repeval.checks`` (each registers its check)."""
    discover("repeval.validation.checks", "repeval.checks")


def check_names() -> tuple[str, ...]:
    """Every registered check, in the default order (``order``, then name)."""
    load_builtin_checks()
    return tuple(sorted(CHECKS, key=lambda n: (CHECKS.get(n).order, n)))


def get_check(name: str) -> Check:
    """The registered check ``name``; an unknown name is a RegistryError listing the valid ones."""
    load_builtin_checks()
    return CHECKS.get(name)
