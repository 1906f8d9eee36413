"""Evaluation protocols, one file each; importing this package registers them all."""
from importlib import import_module

PROTOCOL_MODULES = ("mlp", "svm", "recon", "mine", "ndm", "knn", "linear")

for _m in PROTOCOL_MODULES:
    import_module(f"{__name__}.{_m}")
