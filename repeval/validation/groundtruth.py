"""Distributions with known mutual information / total correlation: the one home of the closed
forms ``repeval validate`` checks against.

Pure math and seeded samplers, no I/O, no training (MINE, Belghazi et al. 2018, Sec. 5.1;
Czyz et al., "Beyond Normal: On the Evaluation of Mutual Information Estimators", NeurIPS 2023):

- correlated Gaussians: X, Y in R^d, corr(X_i, Y_j) = rho * delta_ij,
  I(X; Y) = -(d/2) log(1 - rho^2)  (:func:`repeval.estimators.bounds.gaussian_mi`);
- additive Gaussian noise: X ~ N(0, I_d), Y = X + sigma * eps, I(X; Y) = (d/2) log(1 + 1/sigma^2);
  an invertible map g applied to X leaves it unchanged, I(g(X); Y) = I(X; Y). Written the MINE
  way, the pair (X', Y) = (g(X), Y) satisfies Y = f(X') + sigma * eps with f = g^-1 invertible;
- Gaussian codes with correlation matrix R: total correlation
  TC = KL(p(z) || prod_i p(z_i)) = -1/2 log det R  (:func:`repeval.estimators.bounds.gaussian_total_correlation`);
- multivariate Student-t (heavy tails): (X, Y) = (X0, Y0) / sqrt(W / nu), (X0, Y0) the correlated
  Gaussians above, W ~ chi^2_nu. Its MI is the Gaussian MI of the same dispersion matrix plus a
  correction that depends only on nu and the dimensions (Arellano-Valle, Contreras-Reyes & Genton,
  Scand. J. Stat. 40, 2013, Eq. 7 for the entropies; Czyz et al. 2023, Sec. 3):
  I = I_Gauss + f(nu) + f(nu + d_x + d_y) - f(nu + d_x) - f(nu + d_y),
  f(k) = log Gamma(k/2) - (k/2) psi(k/2)  (:func:`student_t_mi`). The correction is > 0: a Student-t
  pair is dependent even with an identity dispersion (the shared scale W).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.special import digamma, gammaln

from ..estimators.bounds import gaussian_mi, gaussian_total_correlation
from ..seeding import derive_seed, generator

__all__ = ["gaussian_mi", "gaussian_total_correlation", "noisy_channel_mi", "sample_correlated_gaussian",
           "sample_noisy_channel", "student_t_correction", "student_t_mi", "sample_student_t",
           "invertible_map", "INVERTIBLE_MAPS", "factor_correlation",
           "correlation_for_tc", "sample_gaussian_code"]


def noisy_channel_mi(d: int, sigma: float) -> float:
    """I(X; X + sigma * eps) = (d/2) log(1 + 1/sigma^2) nats for X ~ N(0, I_d), eps ~ N(0, I_d)."""
    return 0.5 * d * math.log1p(1.0 / (sigma * sigma))


def sample_correlated_gaussian(n: int, d: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (X, Y), X, Y ~ N(0, I_d), corr(X_i, Y_j) = rho * delta_ij (MINE Sec. 5.1.1)."""
    g = generator(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    e = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(max(0.0, 1.0 - rho * rho)) * e
    return x.float(), y.float()


def sample_noisy_channel(n: int, d: int, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs X ~ N(0, I_d), Y = X + sigma * eps."""
    g = generator(seed)
    x = torch.randn(n, d, generator=g)
    return x, x + sigma * torch.randn(n, d, generator=g)


# --- multivariate Student-t (heavy tails) -------------------------------------------------------

def student_t_correction(dof: float, dim_x: int, dim_y: int) -> float:
    """I(X; Y) of a Student-t pair minus that of the Gaussian pair with the same dispersion, nats:
    f(nu) + f(nu + d_x + d_y) - f(nu + d_x) - f(nu + d_y), f(k) = log Gamma(k/2) - (k/2) psi(k/2)
    (from the Student-t entropy, Arellano-Valle et al. 2013, Eq. 7; positive, -> 0 as nu -> inf)."""
    def f(k: float) -> float:
        return float(gammaln(k / 2) - k / 2 * digamma(k / 2))
    return f(dof) + f(dof + dim_x + dim_y) - f(dof + dim_x) - f(dof + dim_y)


def student_t_mi(rho: float, d: int, dof: float) -> float:
    """I(X; Y) nats of a d x d Student-t pair with ``dof`` degrees of freedom and dispersion
    [[I, rho I], [rho I, I]]: -(d/2) log(1 - rho^2) + :func:`student_t_correction` (dof, d, d)."""
    return gaussian_mi(rho, d) + student_t_correction(dof, d, d)


def sample_student_t(n: int, d: int, rho: float, dof: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (X, Y) in R^d x R^d of the Student-t of :func:`student_t_mi`: correlated Gaussians
    (corr(X_i, Y_j) = rho delta_ij) divided, per pair, by one shared sqrt(W / dof), W ~ chi^2_dof."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal((n, d))
    scale = np.sqrt(rng.chisquare(dof, n) / dof)[:, None]
    return torch.from_numpy(x / scale).float(), torch.from_numpy(y / scale).float()


# --- invertible maps (for the invariance check) --------------------------------------------------

def _orthogonal(d: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def _linear(d: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> x A^T with A = Q diag(s), s in [e^-1, e^1]: invertible, condition number <= e^2."""
    g = generator(derive_seed(seed, "linear-map", d))
    q = _orthogonal(d, g)
    s = torch.exp(2.0 * torch.rand(d, generator=g, dtype=torch.float64) - 1.0)
    a = (q * s).float()
    return lambda x: x @ a.T


def _cubic(d: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> x^3 elementwise: strictly increasing, so invertible (heavy-tailed output)."""
    return lambda x: x ** 3


def _residual_tanh(d: int, seed: int, layers: int = 2, scale: float = 0.5, norm: float = 0.9):
    """x -> h_L o ... o h_1(x), h_k(x) = x + scale * tanh(x A_k^T), spectral norm of A_k = ``norm``.

    Each h_k has Jacobian I + scale * diag(tanh') A_k with ||scale * diag(tanh') A_k|| <= 0.45 < 1,
    so h_k is a bi-Lipschitz bijection (invertible residual layer, Behrmann et al. 2019).
    """
    g = generator(derive_seed(seed, "mlp-map", d))
    mats = []
    for _ in range(layers):
        a = torch.randn(d, d, generator=g, dtype=torch.float64)
        mats.append((a * (norm / torch.linalg.matrix_norm(a, ord=2))).float())

    def f(x: torch.Tensor) -> torch.Tensor:
        for a in mats:
            x = x + scale * torch.tanh(x @ a.T)
        return x
    return f


INVERTIBLE_MAPS: dict[str, Callable] = {
    "identity": lambda d, seed: (lambda x: x),
    "linear": _linear,
    "cubic": _cubic,
    "residual_mlp": _residual_tanh,
}


def invertible_map(name: str, d: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fixed (seeded) invertible map R^d -> R^d by name: identity, linear, cubic, residual_mlp."""
    if name not in INVERTIBLE_MAPS:
        raise ValueError(f"unknown map '{name}'; valid: {', '.join(INVERTIBLE_MAPS)}")
    return INVERTIBLE_MAPS[name](d, seed)


# --- Gaussian codes with a chosen total correlation ----------------------------------------------

def factor_correlation(d: int, rank: int, strength: float, seed: int) -> torch.Tensor:
    """Correlation matrix of Sigma = I + strength * W W^T, W (d x rank) fixed Gaussian, in float64."""
    g = generator(derive_seed(seed, "factor", d, rank))
    w = torch.randn(d, rank, generator=g, dtype=torch.float64) / math.sqrt(rank)
    cov = torch.eye(d, dtype=torch.float64) + strength * (w @ w.T)
    s = torch.sqrt(torch.diagonal(cov))
    return cov / s[:, None] / s[None, :]


def correlation_for_tc(d: int, tc: float, seed: int, rank: int = 4, tol: float = 1e-9) -> torch.Tensor:
    """A factor-model correlation matrix R with -1/2 log det R = ``tc`` (bisection on the strength)."""
    if tc <= 0:
        return torch.eye(d, dtype=torch.float64)
    lo, hi = 0.0, 1.0
    while gaussian_total_correlation(factor_correlation(d, rank, hi, seed)) < tc:
        hi *= 2.0
        if hi > 1e12:
            raise ValueError(f"total correlation {tc} not reachable with d={d}, rank={rank}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gaussian_total_correlation(factor_correlation(d, rank, mid, seed)) < tc:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol * max(1.0, hi):
            break
    return factor_correlation(d, rank, 0.5 * (lo + hi), seed)


def sample_gaussian_code(n: int, corr: torch.Tensor, seed: int) -> torch.Tensor:
    """n samples z ~ N(0, R) (float32), via the Cholesky factor of R."""
    chol = torch.linalg.cholesky(corr.double())
    z = torch.randn(n, corr.shape[0], generator=generator(seed), dtype=torch.float64)
    return (z @ chol.T).float()
