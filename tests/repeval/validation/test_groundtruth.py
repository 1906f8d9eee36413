"""repeval/validation/groundtruth.py: closed forms against numerical integration / Monte Carlo, the
samplers, the invertible maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import multivariate_normal, multivariate_t, norm

from repeval.validation import groundtruth as gt


def _mi_by_integration(logp_joint, logp_x, logp_y, lim: float = 10.0, n: int = 1201) -> float:
    """I = int p(x,y) log p(x,y) / (p(x) p(y)) dx dy on a fine grid over [-lim, lim]^2 (d = 1).

    The trapezoid rule is spectrally accurate for these smooth, rapidly decaying integrands."""
    t = np.linspace(-lim, lim, n)
    x, y = np.meshgrid(t, t, indexing="ij")
    lj = logp_joint(x, y)
    f = np.exp(lj) * (lj - logp_x(x) - logp_y(y))
    return float(integrate.trapezoid(integrate.trapezoid(f, t, axis=1), t))


@pytest.mark.parametrize("rho", [0.3, -0.8])
def test_gaussian_mi_matches_numerical_integration(rho):
    mvn = multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]])
    num = _mi_by_integration(lambda x, y: mvn.logpdf(np.stack([x, y], -1)), norm.logpdf, norm.logpdf)
    assert gt.gaussian_mi(rho, 1) == pytest.approx(num, abs=1e-5)
    assert gt.gaussian_mi(rho, 20) == pytest.approx(20 * num, abs=1e-4)  # independent coordinates add


def test_noisy_channel_mi_matches_numerical_integration():
    sigma = 0.5
    s_y = math.sqrt(1 + sigma ** 2)
    num = _mi_by_integration(lambda x, y: norm.logpdf(x) + norm.logpdf(y, loc=x, scale=sigma),
                             norm.logpdf, lambda y: norm.logpdf(y, scale=s_y))
    assert gt.noisy_channel_mi(1, sigma) == pytest.approx(num, abs=1e-5)
    assert gt.noisy_channel_mi(3, sigma) == pytest.approx(3 * num, abs=1e-4)


def test_total_correlation_matches_monte_carlo():
    corr = gt.correlation_for_tc(4, 0.7, seed=3, rank=2)
    assert torch.allclose(torch.diagonal(corr), torch.ones(4, dtype=torch.float64))
    assert gt.gaussian_total_correlation(corr) == pytest.approx(0.7, abs=1e-6)
    z = gt.sample_gaussian_code(200_000, corr, seed=1).double().numpy()
    # TC = E[log p(z) - sum_i log p(z_i)]; marginals are N(0, 1) since R has a unit diagonal
    terms = multivariate_normal(mean=np.zeros(4), cov=corr.numpy()).logpdf(z) - norm.logpdf(z).sum(1)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - 0.7) < 4 * se + 1e-3
    assert gt.gaussian_total_correlation(gt.correlation_for_tc(6, 0.0, seed=0)) == 0.0


def test_samplers_have_the_stated_moments():
    x, y = gt.sample_correlated_gaussian(50_000, 3, -0.6, seed=0)
    c = np.corrcoef(x.numpy().T, y.numpy().T)
    assert np.allclose(np.diag(c[:3, 3:]), -0.6, atol=0.02)
    assert abs(c[0, 4]) < 0.02 and abs(c[0, 1]) < 0.02
    a, b = gt.sample_correlated_gaussian(10, 3, 0.2, seed=7), gt.sample_correlated_gaussian(10, 3, 0.2, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    corr = gt.correlation_for_tc(8, 1.5, seed=0)
    z = gt.sample_gaussian_code(100_000, corr, seed=2)
    assert torch.allclose(torch.corrcoef(z.T).double(), corr, atol=0.02)


# lower Lipschitz constants claimed in repeval/validation/groundtruth.py: |f(a) - f(b)| >= c |a - b| => injective
LOWER_LIPSCHITZ = {"identity": 1.0, "linear": math.exp(-1.0), "residual_mlp": (1 - 0.45) ** 2}

@pytest.mark.parametrize("name", list(gt.INVERTIBLE_MAPS))
def test_maps_are_invertible(name):
    f = gt.invertible_map(name, 5, seed=0)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 5, generator=g)
    b = a + torch.randn(4000, 5, generator=g) * torch.rand(4000, 1, generator=g) * 2
    fa, fb = f(a), f(b)
    if name == "cubic":  # strictly increasing in every coordinate
        assert bool(((fa - fb) * (a - b) > 0).all())
    else:
        ratio = (fa - fb).norm(dim=1) / (a - b).norm(dim=1)
        assert float(ratio.min()) >= LOWER_LIPSCHITZ[name] - 1e-4
    assert torch.equal(fa, gt.invertible_map(name, 5, seed=0)(a))  # fixed by the seed
    assert name == "identity" or not torch.allclose(fa, a)


@pytest.mark.parametrize("d, dof, rho", [(1, 1.0, 0.5), (2, 3.0, 0.0), (5, 2.0, 0.0)])
def test_student_t_mi_matches_monte_carlo(d, dof, rho):
    """I = E[log p(x, y) - log p(x) - log p(y)] over the sampler's own pairs (so the sampler is
    checked too), with scipy's multivariate t densities; dispersion [[I, rho I], [rho I, I]]."""
    x, y = gt.sample_student_t(200_000, d, rho, dof, seed=3)
    xy = torch.cat([x, y], 1).double().numpy()
    eye = np.eye(d)
    shape = np.block([[eye, rho * eye], [rho * eye, eye]])
    terms = (multivariate_t(np.zeros(2 * d), shape, df=dof).logpdf(xy)
             - multivariate_t(np.zeros(d), eye, df=dof).logpdf(xy[:, :d])
             - multivariate_t(np.zeros(d), eye, df=dof).logpdf(xy[:, d:]))
    se = terms.std() / math.sqrt(len(terms))
    truth = gt.student_t_mi(rho, d, dof)
    assert abs(terms.mean() - truth) < 4 * se + 2e-3, (terms.mean(), truth, se)
    assert truth > gt.gaussian_mi(rho, d)                   # the shared scale adds dependence


def test_student_t_tends_to_the_gaussian():
    assert gt.student_t_correction(2.0, 5, 5) == pytest.approx(0.4482, abs=1e-4)   # Czyz et al.'s 5x5, dof 2
    c = [gt.student_t_correction(dof, 3, 3) for dof in (1.0, 3.0, 10.0, 100.0)]
    assert c[0] > c[1] > c[2] > c[3] > 0 and c[3] < 1e-3          # -> 0: the Gaussian limit
    a, b = gt.sample_student_t(10, 2, 0.3, 2.0, seed=1), gt.sample_student_t(10, 2, 0.3, 2.0, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
