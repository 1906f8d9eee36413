"""Samplers with known mutual information: the task families of the public MI-estimator benchmark
(Czyz et al., NeurIPS 2023, "Beyond normal: on the evaluation of mutual information estimators").

Each task draws its own seeded samples (numpy) and carries its closed-form I(X; Y) in nats:

- multivariate normal (``dense``: every correlation 0.5; ``sparse``: 2 interacting pairs):
  I = 1/2 (log det S_xx + log det S_yy - log det S);
- additive uniform noise, X ~ U(0, 1), Y = X + U(-e, e): I = e - log(2e) (e <= 1/2), 1/(4e) (e >= 1/2);
- multivariate Student-t with identity dispersion and nu degrees of freedom (dims m + n):
  I = g(m) + g(n) - g(m + n), g(d) = log G(nu/2) - log G((nu+d)/2) + (nu+d)/2 (psi((nu+d)/2) - psi(nu/2));
- invertible transforms keep I: half-cube x |x|^(1/2), normal CDF Phi(x), asinh, and the spiral
  x -> R(v |x|^2) x (a rotation by an angle growing with the norm, invertible since |x| is kept), as
  in the benchmark: speed v = 1 / dim, x rotated in its (0, 1) plane, y in its (1, 2) plane.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import digamma, gammaln, ndtr


@dataclass(frozen=True)
class Task:
    name: str
    mi: float
    sample: Callable[[int, int], tuple[np.ndarray, np.ndarray]]   # (n, seed) -> x (n, dx), y (n, dy)


def gaussian_block_mi(cov: np.ndarray, dx: int) -> float:
    ld = lambda m: np.linalg.slogdet(m)[1]
    return 0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov))


def dense_cov(dx: int, dy: int, rho: float = 0.5) -> np.ndarray:
    d = dx + dy
    return (1 - rho) * np.eye(d) + rho * np.ones((d, d))


def sparse_cov(dx: int, dy: int, k: int = 2, rho: float = 0.8) -> np.ndarray:
    """X_i and Y_i correlated (rho) for i < k; every other pair independent."""
    cov = np.eye(dx + dy)
    for i in range(k):
        cov[i, dx + i] = cov[dx + i, i] = rho
    return cov


def normal_task(name: str, cov: np.ndarray, dx: int, fx=None, fy=None) -> Task:
    def sample(n, seed):
        z = np.random.default_rng(seed).multivariate_normal(np.zeros(len(cov)), cov, size=n)
        x, y = z[:, :dx], z[:, dx:]
        return (fx(x) if fx else x), (fy(y) if fy else y)
    return Task(name, gaussian_block_mi(cov, dx), sample)


def additive_task(eps: float) -> Task:
    mi = eps - math.log(2 * eps) if eps <= 0.5 else 1 / (4 * eps)

    def sample(n, seed):
        g = np.random.default_rng(seed)
        x = g.uniform(0, 1, (n, 1))
        return x, x + g.uniform(-eps, eps, (n, 1))
    return Task(f"1v1-additive-{eps}", mi, sample)


def student_mi(nu: float, dx: int, dy: int) -> float:
    def g(d):
        return gammaln(nu / 2) - gammaln((nu + d) / 2) + (nu + d) / 2 * (digamma((nu + d) / 2) - digamma(nu / 2))
    return float(g(dx) + g(dy) - g(dx + dy))


def student_task(dx: int, dy: int, nu: int, f=None, prefix: str = "") -> Task:
    def sample(n, seed):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, dx + dy)) / np.sqrt(rng.chisquare(nu, (n, 1)) / nu)
        x, y = z[:, :dx], z[:, dx:]
        return (f(x) if f else x), (f(y) if f else y)
    return Task(f"{prefix}student-identity-{dx}-{dy}-{nu}", student_mi(nu, dx, dy), sample)


def half_cube(x):
    return x * np.sqrt(np.abs(x))


def spiral(x, plane: tuple[int, int] = (0, 1)):
    """Czyz et al.'s spiral (bmi's ``transform_spiral_task``, normalised speed): rotate in the
    ``plane`` by speed * |x|^2 with speed = 1 / dim (keeps |x|, so it is invertible)."""
    i, j = plane
    angle = (x ** 2).sum(1) / x.shape[1]
    c, s = np.cos(angle), np.sin(angle)
    out = x.copy()
    out[:, i], out[:, j] = c * x[:, i] - s * x[:, j], s * x[:, i] + c * x[:, j]
    return out


def tasks() -> list[Task]:
    sp5 = sparse_cov(5, 5)
    return [
        normal_task("1v1-normal-0.75", np.array([[1, .75], [.75, 1]]), 1),
        additive_task(0.1),
        additive_task(0.75),
        normal_task("multinormal-dense-5-5-0.5", dense_cov(5, 5), 5),
        normal_task("multinormal-dense-25-25-0.5", dense_cov(25, 25), 25),
        normal_task("multinormal-dense-50-50-0.5", dense_cov(50, 50), 50),
        normal_task("multinormal-sparse-5-5-2-0.8", sp5, 5),
        normal_task("multinormal-sparse-25-25-2-0.8", sparse_cov(25, 25), 25),
        student_task(1, 1, 1),
        student_task(5, 5, 2),
        normal_task("half-cube-sparse-5-5", sp5, 5, half_cube, half_cube),
        normal_task("spiral-sparse-5-5", sp5, 5, spiral, lambda y: spiral(y, (1, 2))),
        normal_task("normal-cdf-sparse-5-5", sp5, 5, ndtr, ndtr),
        student_task(1, 1, 1, np.arcsinh, "asinh-"),
        student_task(5, 5, 2, np.arcsinh, "asinh-"),
    ]
