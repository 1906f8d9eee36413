"""repeval: benchmark learned image representations with the Deep InfoMax evaluation protocols."""
import importlib
import os

# The one environment default repeval sets, and only if the user has not: OpenMP threads that
# spin-wait make torch many times slower whenever the cores are shared (measured: an AE step 0.16 s
# passive vs 2.4 s spinning on a loaded 2-core machine). It must precede torch's import (OpenMP reads
# it when loaded), hence here; which value ran, and who set it, is recorded in every record's
# provenance (``repeval.provenance.runtime``).
OMP_WAIT_POLICY_FROM_USER = "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# The public API, imported on first use (PEP 562): importing the package itself loads no torch, so
# the console command (repeval.entry) can turn a Ctrl-C during the heavy imports into a clean exit.
_API = {"TrainConfig": "config", "SharedEncoder": "estimators.nets", "ProtocolInput": "plugin.protocol",
        "register_protocol": "plugin.protocol", "DATASETS": "registry", "MODELS": "registry", "PROTOCOLS": "registry",
        "Family": "engine.train", "register_encoder": "plugin.zoo", "register_model": "plugin.zoo",
        "register_backbone": "plugin.zoo"}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value
    return value


def load_builtins() -> None:
    """Register the built-in encoder families and protocols (idempotent)."""
    import repeval.models  # noqa: F401
    import repeval.protocols  # noqa: F401


__all__ = [*_API, "load_builtins", "__version__"]
