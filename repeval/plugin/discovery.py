"""Finding the families and protocols: the built-in ones (every module of ``repeval.models`` and
``repeval.protocols``) and those of installed packages (entry point groups ``repeval.families`` and
``repeval.protocols``), by :func:`repeval.registry.discover`. A user's file adds its own with
``--plugin FILE.py`` (:mod:`repeval.plugin.loader`)."""
from __future__ import annotations

from ..registry import discover

FAMILY_GROUP = "repeval.families"
PROTOCOL_GROUP = "repeval.protocols"


def load_builtins() -> None:
    """Register every built-in and installed encoder family and protocol (idempotent)."""
    discover("repeval.models", FAMILY_GROUP)
    discover("repeval.protocols", PROTOCOL_GROUP)
