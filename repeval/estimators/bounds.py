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
    image j != i (Hjelm et al. 2019: 4032 negatives per positive at N=64, L=64). Locations of the same
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


def log_mean_exp(t: torch.Tensor) -> torch.Tensor:
    """log mean exp over all elements, computed stably."""
    t = t.reshape(-1)
    return torch.logsumexp(t, 0) - math.log(t.numel())


def dv_ema_loss(pos: torch.Tensor, neg: torch.Tensor, log_ema: torch.Tensor | None,
                rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MINE's bias-corrected DV loss (Belghazi et al. 2018, Sec. 3.2); returns (loss, new log-EMA).

    The DV gradient E_P[grad T] - E_Q[e^T grad T] / E_Q[e^T] is biased on minibatches because the
    batch mean of e^T sits in the denominator. MINE replaces that denominator by an exponential
    moving average ``ema <- (1 - rate) ema + rate * mean_batch e^T`` (here kept in log space:
    ``log_ema``, detached). The returned loss is a surrogate whose *gradient* is the negated
    corrected gradient; its value is not the bound (use :func:`dv_bound` for the value). Pass
    ``log_ema=None`` on the first step (the EMA starts at the first batch's mean).
    """
    lme = log_mean_exp(neg)
    cur = lme.detach()
    if log_ema is None:
        new = cur
    else:
        new = torch.logaddexp(log_ema + math.log1p(-rate), cur + math.log(rate))
    # d/dtheta exp(lme - new) = mean(e^T grad T) / ema, with ema = exp(new) held constant
    return -(pos.mean() - torch.exp(lme - new)), new


def global_local_bound(scores: torch.Tensor, estimator: str) -> torch.Tensor:
    """DIM(L) bound from scores (N, N, L) = G_i . L_j(l'): the same number as :func:`local_bound`
    on the expanded tensor ``scores[:, None].expand(N, L, N, L)``, without ever building it.

    The global vector G_i does not depend on the location, so the (N, L, N, L) layout repeats
    every row L times. Positives are ``scores[i, i, l]``; the negatives of (i, l) are
    ``scores[i, j, l']`` for every j != i and every l' (Hjelm et al. 2019: 4032 per positive at
    N = L = 64), the same set for every location l of image i. Hence for infoNCE the log-sum-exp
    over the negatives is computed once per image and shared by its L positives, and the JSD/DV
    negative terms are plain means over the off-diagonal (i, j) blocks (Hjelm et al. 2019, Eqs. 4-5;
    Donsker-Varadhan as in MINE, Eq. 10, taken as a stable log-mean-exp).
    """
    n, n2, L = scores.shape
    if n != n2:
        raise ValueError(f"scores must be (N, N, L), got {tuple(scores.shape)}")
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)[:, :, None]
    pos = scores.diagonal(dim1=0, dim2=1).t()                        # (N, L): u_ii(l)
    if estimator == "infonce":
        lse_neg = scores.masked_fill(eye, float("-inf")).flatten(1).logsumexp(1)   # (N,)
        log_p = pos - torch.logaddexp(pos, lse_neg[:, None])        # log-softmax of the positive
        return log_p.mean() + math.log(1 + (n - 1) * L)
    n_neg = n * (n - 1) * L
    if estimator == "jsd":
        neg_mean = F.softplus(scores).masked_fill(eye, 0.0).sum() / n_neg
        return (LOG2 - F.softplus(-pos)).mean() - (neg_mean - LOG2)
    if estimator == "dv":
        lme = scores.masked_fill(eye, float("-inf")).logsumexp((0, 1, 2)) - math.log(n_neg)
        return pos.mean() - lme
    raise ValueError(f"unknown estimator '{estimator}'; valid: jsd, dv, infonce")
