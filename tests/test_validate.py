"""repeval validate: closed forms against numerical integration / Monte Carlo, samplers, maps,
and a tiny end-to-end run (files, provenance, PASS lines, non-zero exit on failure)."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from repeval import groundtruth as gt
from repeval.boundfit import BoundFitConfig, fit_bound
from repeval.perturb import add_noise, gaussian_blur, synthetic_images
from repeval.validate import cmd_validate, rebuild_reports, run_validation
from repeval.validate_config import quick_config


@pytest.fixture
def one_thread():
    """The validation nets are tiny: one thread is fastest and immune to CPU oversubscription."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


# lower Lipschitz constants claimed in repeval/groundtruth.py: |f(a) - f(b)| >= c |a - b| => injective
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


def test_perturbations_are_ordered():
    x = synthetic_images(4, seed=0)
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(gaussian_blur(x, 0.0), x) and torch.equal(add_noise(x, 0.0, 1), x)
    errs = [float((gaussian_blur(x, s) - x).abs().mean()) for s in (0.5, 1.0, 2.0)]
    assert errs[0] < errs[1] < errs[2]
    assert torch.equal(add_noise(x, 0.1, 5), add_noise(x, 0.1, 5))


def test_bound_fit_is_deterministic_and_infonce_is_capped(one_thread):
    x, y = gt.sample_correlated_gaussian(1200, 2, 0.999, seed=0)  # I = 6.2 nats > log 32 = 3.47
    cfg = BoundFitConfig(steps=60, batch_size=32, eval_batch=32, hidden=32, embed=8)
    a = fit_bound(x, y, "infonce", cfg, seed=1)
    assert a == fit_bound(x, y, "infonce", cfg, seed=1)
    assert a["infonce"] <= math.log(32) + 1e-6
    assert 0.0 <= a["jsd"] <= 2 * math.log(2) + 1e-6


def _tiny(**kw):
    base = dict(n_samples=2000, dims=(2,), rhos=(0.0, 0.8), mine_steps=150, mine_hidden=64, mine_x_features=32,
                mine_batch_size=128, bound_steps=150, bound_hidden=64, bound_embed=16,
                inv_sigmas=(0.5,), inv_maps=("identity", "linear"),
                ndm_dim=8, ndm_tcs=(0.0, 0.5), ndm_n_samples=1000, ndm_steps=60, ndm_batch_size=256,
                ssim_images=4, noise_levels=(0.0, 0.1, 0.3), blur_levels=(0.0, 1.0, 2.0))
    base.update(kw)
    return quick_config(**base)


def test_tiny_validation_run_writes_everything(tmp_path, one_thread):
    cfg = _tiny()
    s = run_validation(cfg, tmp_path, mode="test", quiet=True)
    for name in ("gaussian.csv", "gaussian.md", "gaussian_d2.png", "gaussian_bias.csv", "invariance.csv",
                 "invariance.png", "ndm.csv", "ndm.png", "ssim.csv", "ssim.md", "ssim.png", "summary.md",
                 "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    js = json.loads((tmp_path / "summary.json").read_text())
    assert js["config_hash"] == s["config_hash"] and js["provenance"]["versions"]["torch"]
    assert js["config"]["rhos"] == [0.0, 0.8]
    assert set(js["checks"]) == {"gaussian", "invariance", "ndm", "ssim"}
    assert all(js["checks"][c]["wall_s"] >= 0 for c in js["checks"])
    assert js["checks"]["ssim"]["passed"], js["checks"]["ssim"]["lines"]
    g = {v["name"]: v["passed"] for v in js["checks"]["gaussian"]["verdicts"]}
    # cheap, robust properties: lower bounds do not overestimate; infoNCE stays below log K
    assert g["mine_no_overestimate"] and g["dv_no_overestimate"] and g["infonce_ceiling"]
    n = {v["name"]: v["passed"] for v in js["checks"]["ndm"]["verdicts"]}
    assert n["zero_at_independence"] and n["monotone"]
    rows = js["checks"]["gaussian"]["rows"]
    assert all(r["infonce"] <= math.log(cfg.bound_batch_size) + 1e-6 for r in rows)
    assert [r["true_mi"] for r in rows] == pytest.approx([0.0, gt.gaussian_mi(0.8, 2)])
    assert "PASS  ssim/ssim_identity" in (tmp_path / "summary.md").read_text()
    # reports can be rebuilt from the stored rows alone, with the same verdicts
    (tmp_path / "ndm.png").unlink()
    r = rebuild_reports(tmp_path)
    assert (tmp_path / "ndm.png").exists() and "rebuilt" in r
    assert {k: c["lines"] for k, c in r["checks"].items()} == {k: c["lines"] for k, c in js["checks"].items()}


def test_failed_check_gives_nonzero_exit(tmp_path, capsys, one_thread):
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path, quiet=True)
    ok = _tiny(checks=("ssim",))
    assert cmd_validate(args, config=ok) == 0
    bad = _tiny(checks=("ssim",), noise_levels=(0.0, 0.2, 0.1))  # not an increasing grid: must FAIL
    assert cmd_validate(args, config=bad) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "ssim_noise_monotone" in out
    assert (tmp_path / "quick" / "summary.json").exists()
