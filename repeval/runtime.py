"""The process-wide defaults repeval sets before torch loads, and its version.

How OpenMP's idle threads wait decides the speed of the many small operations of a run
(measured on 2 cores, digits, random + AE + DIM(L), one process: 79 s sleeping at once
(``OMP_WAIT_POLICY=PASSIVE``), 57 s spinning briefly (``GOMP_SPINCOUNT=3000``), 56 s spinning
(``ACTIVE``); two such processes sharing the 2 cores: 78 s, 99 s and 222 s). So repeval spins briefly
when the machine has a core to spare when it starts (1-minute load average below the cores available
minus 0.5) and sleeps at once otherwise; a user's ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is kept.
OpenMP reads them when torch loads, so this module is imported first by the package; every record's
provenance states which values ran and who set them. Neither changes a number, only the speed.
"""
import os

__version__ = "0.1.0"

SHORT_SPIN = "3000"   # GOMP_SPINCOUNT when a core is free: spin ~microseconds, then sleep


def openmp_wait(env, load: float, cpus: int) -> dict[str, str]:
    """The OpenMP wait settings to add to ``env`` (none when the user set either), given the
    1-minute load average and the cores available: a short spin on a machine with a spare core,
    an immediate sleep (PASSIVE) on a busy one."""
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return {}
    return {"GOMP_SPINCOUNT": SHORT_SPIN} if load < cpus - 0.5 else {"OMP_WAIT_POLICY": "PASSIVE"}


def available_cpus() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def _load_and_cpus() -> tuple[float, int]:
    cpus = available_cpus()
    try:
        return os.getloadavg()[0], cpus
    except OSError:                 # no load average: assume busy (the safe choice)
        return float(cpus), cpus


SET_BY_REPEVAL = "REPEVAL_SET_OMP_WAIT"   # marks the settings a parent repeval chose (its worker processes inherit them)
OMP_WAIT_POLICY_FROM_USER = (("OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ)
                             and SET_BY_REPEVAL not in os.environ)
_ours = openmp_wait(os.environ, *_load_and_cpus())
os.environ.update(_ours, **({SET_BY_REPEVAL: "1"} if _ours else {}))
