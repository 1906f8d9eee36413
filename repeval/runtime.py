"""The process-wide defaults repeval sets before torch loads, and its version.

OpenMP threads that spin-wait make torch many times slower whenever the cores are shared (measured:
an AE step 0.16 s passive vs 2.4 s spinning on a loaded 2-core machine), so ``OMP_WAIT_POLICY`` is
set to ``PASSIVE`` unless the user set it. OpenMP reads it when torch loads, so this module is
imported first by the package; every record's provenance states which value ran and who set it.
"""
import os

__version__ = "0.1.0"

OMP_WAIT_POLICY_FROM_USER = "OMP_WAIT_POLICY" in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
