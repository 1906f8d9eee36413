"""repeval: benchmark learned image representations with the Deep InfoMax evaluation protocols."""
import os

# The one environment default repeval sets, and only if the user has not: OpenMP threads that
# spin-wait make torch many times slower whenever the cores are shared (measured: an AE step 0.16 s
# passive vs 2.4 s spinning on a loaded 2-core machine). It must precede torch's import (OpenMP reads
# it when loaded), hence here; which value ran, and who set it, is recorded in every record's
# provenance (``repeval.provenance.runtime``).
OMP_WAIT_POLICY_FROM_USER = "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .config import TrainConfig  # noqa: E402
from .nets import SharedEncoder
from .protocol import ProtocolInput, register_protocol
from .registry import DATASETS, MODELS, PROTOCOLS
from .train import Family
from .zoo import register_backbone, register_encoder, register_model

__version__ = "0.1.0"


def load_builtins() -> None:
    """Register the built-in encoder families and protocols (idempotent)."""
    import repeval.models  # noqa: F401
    import repeval.protocols  # noqa: F401


__all__ = ["TrainConfig", "SharedEncoder", "ProtocolInput", "register_protocol", "DATASETS", "MODELS",
           "PROTOCOLS", "Family", "register_backbone", "register_encoder", "register_model", "load_builtins",
           "__version__"]
