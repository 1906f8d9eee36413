"""Feature-spectrum diagnostics: is a representation spread over many directions, or collapsed?

For features X (N images x D units) with covariance eigenvalues l_1 >= ... >= l_D:

- participation ratio PR = (sum l)^2 / sum l^2, between 1 (one direction carries all the variance)
  and D (isotropic) (Gao et al., "A theory of multineuronal dimensionality", 2017);
- effective rank exp(H(p)), p = l / sum l, H the Shannon entropy (Roy & Vetterli, EUSIPCO 2007);
- dead fraction: the share of units constant over the images (a ReLU unit that never fires).

A tap is flagged ``collapsed`` when its participation ratio is below :data:`COLLAPSED_PR`, or when
most of its units are dead. The spectrum is taken on :data:`SUBSET` test images evenly spaced
through the split (a split stored sorted by class still gives every class), so it is deterministic
and costs one Gram matrix and one symmetric eigendecomposition of size min(SUBSET, D).
"""
from __future__ import annotations

import math

import torch

SUBSET = 2048
COLLAPSED_PR = 5.0          # an untrained shared encoder sits at 20-30 on every CIFAR-10 tap
DEAD_TOL = 1e-6             # a unit whose std is below DEAD_TOL x the largest unit std is dead
KEYS = ("participation_ratio", "effective_rank", "dead_fraction", "dim", "n")


def spectrum(x: torch.Tensor, subset: int = SUBSET) -> dict[str, float]:
    """The diagnostics of features ``x`` (N, ...) on ``subset`` rows evenly spaced through it (the Gram
    matrix in float32, its eigenvalues in float64)."""
    if x.shape[0] > subset:
        x = x[torch.linspace(0, x.shape[0] - 1, subset).round().long()]
    x = x.flatten(1).float()
    n, d = x.shape
    if n < 2:
        raise ValueError(f"spectrum needs at least 2 images, got {n}")
    std = x.std(0)
    dead = float((std <= DEAD_TOL * std.max()).double().mean()) if float(std.max()) > 0 else 1.0
    xc = x - x.mean(0)
    gram = xc.T @ xc if d <= n else xc @ xc.T      # the smaller side: same non-zero eigenvalues
    lam = torch.linalg.eigvalsh(gram.double()).clamp_min(0) / (n - 1)
    total = float(lam.sum())
    if total <= 0:
        pr = er = 0.0
    else:
        pr = total ** 2 / float(lam.pow(2).sum())
        p = lam / total
        p = p[p > 0]
        er = math.exp(float(-(p * p.log()).sum()))
    return {"participation_ratio": pr, "effective_rank": er, "dead_fraction": dead, "dim": float(d), "n": float(n)}


def collapsed(spec: dict) -> bool:
    """Whether a tap's spectrum (from :func:`spectrum`) says the features are collapsed."""
    return spec["participation_ratio"] < COLLAPSED_PR or spec["dead_fraction"] > 0.5
