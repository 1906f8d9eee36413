"""Encoder families, one file each; importing this package registers them all."""
from importlib import import_module

FAMILIES = ("ae", "vae", "aae", "bigan", "nat", "dim", "supervised", "random")

for _m in FAMILIES:
    import_module(f"{__name__}.{_m}")
