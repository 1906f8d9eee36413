"""Random-init floor: the shared encoder at its seeded initialisation, never trained.

Every learned row must clear it; its BN layers use their initial running statistics (mean 0, var 1).
"""
from __future__ import annotations

from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


@register_model("random", "Random init")
class RandomInit(Family):
    order = 80   # position in `repeval list` and the default --models
    section = "random"
    trains = False
