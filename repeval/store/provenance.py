"""What produced a number: package versions, the git commit, the machine."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("repeval", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pytorch-msssim", "pandas")


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the repeval checkout (with '+dirty' when tracked code has local changes), else 'unknown'."""
    return commit_of(Path(__file__).resolve().parent)


def commit_of(where: Path) -> str:
    """HEAD of the git checkout holding ``where``, '+dirty' when a tracked file outside ``results/``
    has local changes (records and tables being rewritten do not make the code dirty)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not rev:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(device: str) -> dict[str, str]:
    info = {"platform": platform.platform(), "processor": platform.machine(), "device": device}
    if device.startswith("cuda"):
        import torch
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_isa() -> str:
    """The vector ISA of this CPU that matters for speed: avx512_bf16, avx512f, avx2 or baseline."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        flags = set()
    return next((isa for isa in ("avx512_bf16", "avx512f", "avx2") if isa in flags), "baseline")


def runtime() -> dict:
    """The execution choices that can change speed (and float rounding): threads, OpenMP's wait
    policy and spin count and who set them (:mod:`repeval.runtime`), the DIM critics' GEMM path (:func:`repeval.estimators.critics.default_gemm`)."""
    import os

    import torch

    from ..estimators.critics import default_gemm
    from ..runtime import OMP_WAIT_POLICY_FROM_USER
    return {"torch_threads": torch.get_num_threads(), "cpu_isa": cpu_isa(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
            "omp_wait_policy_set_by": "user" if OMP_WAIT_POLICY_FROM_USER else "repeval",
            "critic_gemm": default_gemm()}


def provenance(device: str) -> dict:
    return {"versions": versions(), "git_commit": git_commit(), "machine": machine(device), "runtime": runtime()}
