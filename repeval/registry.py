"""Name -> object registries for models, protocols and datasets, and how they are filled.

A registry fails loudly: an unknown name lists the valid ones, a duplicate name names both
definitions, so a typo or a plugin clash is a one-line error rather than a silent override. Names are
listed by their registration's ``order``, then in registration order.

Filling is one mechanism (:func:`discover`): every module of a package (``repeval.models``,
``repeval.protocols``, ``repeval.data``, ``repeval.validation.checks``) is imported and registers
itself, and so is every entry point of the matching group (``repeval.families``,
``repeval.protocols``, ``repeval.datasets``, ``repeval.checks``) of an installed package.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import re
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate registry name (a KeyError whose message prints cleanly)."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def check_name(name: Any, kind: str) -> str:
    """``name`` must be one safe path segment (it becomes part of result and checkpoint paths):
    letters, digits and ``. _ + -``, not starting with a dot or dash, at most 64 characters."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name) or ".." in name:
        raise RegistryError(f"bad {kind} name {name!r}: use letters, digits and . _ + - "
                            "(one path segment, not starting with . or -, at most 64 characters)")
    return name


def did_you_mean(name: Any, valid) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``valid`` to ``name`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def where_defined(obj: Any) -> str:
    """Where ``obj`` was defined or registered: its ``origin`` if it carries one, else ``file:line``."""
    if getattr(obj, "origin", ""):
        return obj.origin
    try:
        target = inspect.unwrap(obj)
        return f"{inspect.getsourcefile(target)}:{inspect.getsourcelines(target)[1]}"
    except (TypeError, OSError):
        return repr(obj)


DEFAULT_ORDER = 100   # registrations without an order (users' plugins) come after the built-ins


class Registry(Generic[T]):
    """``hint``: a sentence added to the unknown-name error (e.g. how to add a model of one's own)."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._items: dict[str, T] = {}
        self._order: dict[str, float] = {}

    def register(self, name: str, obj: T | None = None, *, order: float = DEFAULT_ORDER) -> Any:
        """Register ``obj`` under ``name`` at position ``order``; without ``obj``, return a decorator."""
        if obj is None:
            return lambda o: self.register(name, o, order=order)
        check_name(name, self.kind)
        if name in self._items:
            raise RegistryError(
                f"duplicate {self.kind} name '{name}': defined at {where_defined(self._items[name])} "
                f"and again at {where_defined(obj)}")
        self._items[name] = obj
        self._order[name] = order
        return obj

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)
        self._order.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = f"; {self.hint}" if self.hint else ""
            raise RegistryError(f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; "
                                f"valid {self.kind}s: {', '.join(self.names())}{hint}") from None

    def names(self) -> list[str]:
        return sorted(self._items, key=lambda n: self._order.get(n, DEFAULT_ORDER))

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def discover(package: str, group: str) -> None:
    """Import every module of ``package`` (each registers what it defines) and load every entry point
    of ``group`` (``[project.entry-points."repeval.families"] mine = "my_pkg.families"``). Idempotent."""
    for mod in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{mod.name}")
    for ep in metadata.entry_points(group=group):
        try:
            ep.load()
        except Exception as e:
            raise RegistryError(f"entry point '{ep.name} = {ep.value}' (group {group}) failed to load: "
                                f"{type(e).__name__}: {e}") from None


MODELS: Registry[Callable] = Registry(
    "model", "your own encoder: --plugin FILE.py (register_encoder), --backbone NAME=torchvision:ARCH[:WEIGHTS] "
    "or --pretrained NAME=STATE_DICT.pt")
PROTOCOLS: Registry[Any] = Registry("protocol")
DATASETS: Registry[Callable] = Registry("dataset", "or a folder: npz:DIR, imagefolder:DIR")
