"""repeval: benchmark learned image representations with the Deep InfoMax evaluation protocols."""
import importlib

from .runtime import OMP_WAIT_POLICY_FROM_USER, __version__  # noqa: F401  (first: before torch loads)

# The public API, imported on first use (PEP 562): importing the package itself loads no torch, so
# the console command (repeval.entry) can turn a Ctrl-C during the heavy imports into a clean exit.
_API = {"TrainConfig": "config", "SharedEncoder": "estimators.nets", "ProtocolInput": "plugin.protocol",
        "register_protocol": "plugin.protocol", "DATASETS": "registry", "MODELS": "registry", "PROTOCOLS": "registry",
        "Family": "plugin.family", "register_encoder": "plugin.zoo", "register_model": "plugin.zoo",
        "register_backbone": "plugin.zoo"}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value
    return value


def load_builtins() -> None:
    """Register the built-in encoder families and protocols, and those of installed packages (idempotent)."""
    from .plugin.discovery import load_builtins as load
    load()


__all__ = [*_API, "load_builtins", "__version__"]
