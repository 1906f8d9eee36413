"""repeval: benchmark learned image representations with the Deep InfoMax evaluation protocols."""
import os

# OpenMP threads that spin-wait make torch many times slower whenever the cores are shared
# (measured here: an AE step 0.16 s passive vs 2.4 s spinning on a loaded 2-core machine).
# Must be set before torch loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .config import TrainConfig  # noqa: E402
from .nets import SharedEncoder
from .protocol import ProtocolInput, register_protocol
from .registry import DATASETS, MODELS, PROTOCOLS
from .train import Family
from .zoo import register_encoder, register_model

__version__ = "0.1.0"


def load_builtins() -> None:
    """Register the built-in encoder families and protocols (idempotent)."""
    import repeval.models  # noqa: F401
    import repeval.protocols  # noqa: F401


__all__ = ["TrainConfig", "SharedEncoder", "ProtocolInput", "register_protocol", "DATASETS", "MODELS",
           "PROTOCOLS", "Family", "register_encoder", "register_model", "load_builtins"]
