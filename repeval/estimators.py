"""Mutual-information lower bounds on critic scores: pure math, no I/O, no training.

All functions take a score matrix ``scores[i, j]`` = T(x_i, y_j) where the diagonal holds the
positive (joint) pairs and the off-diagonal the negative (product-of-marginals) pairs, and return
the *bound* (higher = more dependence); losses are the negated bounds. References:
Donsker-Varadhan (MINE, Belghazi et al. 2018, Eq. 10), Jensen-Shannon (Hjelm et al. 2019, Eq. 4),
infoNCE (Hjelm et al. 2019, Eq. 5; Oord et al. 2018).

For DIM(L) the scores carry locations too: ``scores[i, l, j, l']`` = G_i . L_j(l') (shape
N x L x N x L), where positives are (i, l, i, l). :func:`local_bound` handles that layout.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


def _masks(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.eye(n, dtype=torch.bool, device=device)
    return pos, ~pos


def jsd_bound(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """JSD-based bound E_P[-sp(-T)] - E_Q[sp(T)] (shifted by log 2 so it is 0 at chance, as in DIM)."""
    return (LOG2 - F.softplus(-pos)).mean() - (F.softplus(neg) - LOG2).mean()


def dv_bound(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan bound E_P[T] - log E_Q[e^T], the log-mean-exp taken stably."""
    neg = neg.reshape(-1)
    return pos.mean() - (torch.logsumexp(neg, 0) - math.log(neg.numel()))


def kl_bound(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """f-divergence (KL, "NWJ") bound E_P[T] - E_Q[exp(T - 1)]; used to train the NDM critic."""
    return pos.mean() - torch.exp(neg - 1.0).mean()


def infonce_bound(scores: torch.Tensor) -> torch.Tensor:
    """infoNCE with scores (N, K): column 0 positive, the rest candidates; E[log softmax_0] + log K.

    Returned in nats as an MI bound, so it never exceeds log K (K = number of candidates incl. the
    positive).
    """
    return (F.log_softmax(scores, dim=1)[:, 0]).mean() + math.log(scores.shape[1])


def pairwise_bound(scores: torch.Tensor, estimator: str) -> torch.Tensor:
    """Bound from a square score matrix: diagonal = positive pairs, off-diagonal = negatives."""
    n = scores.shape[0]
    pos_m, neg_m = _masks(n, scores.device)
    pos, neg = scores[pos_m], scores[neg_m]
    if estimator == "jsd":
        return jsd_bound(pos, neg)
    if estimator == "dv":
        return dv_bound(pos, neg)
    if estimator == "kl":
        return kl_bound(pos, neg)
    if estimator == "infonce":
        # positive first, then the N-1 other samples of the same row
        return infonce_bound(torch.cat([pos[:, None], scores[neg_m].view(n, n - 1)], dim=1))
    raise ValueError(f"unknown estimator '{estimator}'; valid: jsd, dv, kl, infonce")


def local_bound(scores: torch.Tensor, estimator: str) -> torch.Tensor:
    """DIM(L) bound from scores (N, L, N, L) = G_i . L_j(l'), averaged over locations l.

    Positives are (i, l) with its own location; negatives are every location l' of every other
    image j != i (DIM_SPEC.md: 4032 negatives per positive at N=64, L=64). Locations of the same
    image are neither positives nor negatives for one another.
    """
    n, L = scores.shape[0], scores.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    pos = scores.diagonal(dim1=0, dim2=2).diagonal(dim1=0, dim2=1)  # (N, L): u_ii(l, l)
    other = ~eye[:, None, :, None].expand(n, L, n, L)  # j != i, any l'
    if estimator == "infonce":
        negs = scores[other].view(n, L, (n - 1) * L)
        return infonce_bound(torch.cat([pos[..., None], negs], dim=2).view(n * L, -1))
    neg = scores[other]
    if estimator == "jsd":
        return jsd_bound(pos, neg)
    if estimator == "dv":
        return dv_bound(pos, neg)
    raise ValueError(f"unknown estimator '{estimator}'; valid: jsd, dv, infonce")


def gaussian_mi(rho: float, d: int) -> float:
    """Closed form I(X; Y) = -(d/2) log(1 - rho^2) nats for corr(X_i, Y_j) = rho * delta_ij."""
    return -0.5 * d * math.log1p(-rho * rho)


def gaussian_total_correlation(corr: torch.Tensor) -> float:
    """Total correlation of a Gaussian with correlation matrix R: -1/2 log det R nats."""
    return float(-0.5 * torch.linalg.slogdet(corr.double())[1])
