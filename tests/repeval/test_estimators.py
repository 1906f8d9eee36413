"""DIM's MI bounds (repeval.estimators.bounds) on toy scores: layout equivalence, dependence, limits."""
from __future__ import annotations

import math

import pytest
import torch

from repeval.estimators.bounds import global_local_bound, local_bound, pairwise_bound

ESTIMATORS = ("jsd", "dv", "infonce")


def toy_local(dependent: bool, n: int = 16, L: int = 9, d: int = 8, seed: int = 0) -> torch.Tensor:
    """Scores (N, N, L) = G_i . L_j(l): dependent pairs share content (L_j(l) = G_j + noise)."""
    g = torch.Generator().manual_seed(seed)
    glob = torch.randn(n, d, generator=g)
    noise = 0.5 * torch.randn(n, L, d, generator=g)
    local = (glob[:, None, :] if dependent else torch.randn(n, 1, d, generator=g)) + noise
    return torch.einsum("id,jld->ijl", glob, local) / math.sqrt(d)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_global_local_bound_equals_local_bound_on_the_expanded_tensor(estimator):
    g = torch.Generator().manual_seed(1)
    n, L = 6, 5
    s1 = (3 * torch.randn(n, n, L, generator=g, dtype=torch.float64)).requires_grad_(True)
    s2 = s1.detach().clone().requires_grad_(True)
    fast = global_local_bound(s1, estimator)
    ref = local_bound(s2[:, None].expand(n, L, n, L), estimator)
    assert torch.allclose(fast, ref, rtol=1e-12, atol=1e-12)
    fast.backward()
    ref.backward()
    assert torch.allclose(s1.grad, s2.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bounds_separate_dependent_from_independent_pairs(estimator):
    dep = global_local_bound(toy_local(True), estimator)
    ind = global_local_bound(toy_local(False), estimator)
    assert torch.isfinite(dep) and torch.isfinite(ind)
    assert dep > ind + 0.3, (float(dep), float(ind))
    # the global (N, N) layout of DIM(G)
    dep_g = pairwise_bound(toy_local(True)[..., 0], estimator)
    ind_g = pairwise_bound(toy_local(False)[..., 0], estimator)
    assert dep_g > ind_g + 0.3, (float(dep_g), float(ind_g))


def test_infonce_never_exceeds_log_candidates():
    n, L = 8, 4
    cap = math.log(1 + (n - 1) * L)
    perfect = torch.full((n, n, L), -50.0)
    perfect[torch.arange(n), torch.arange(n)] = 50.0
    assert float(global_local_bound(perfect, "infonce")) <= cap + 1e-6
    assert float(global_local_bound(perfect, "infonce")) > cap - 1e-3   # and reaches it
    for seed in range(5):
        s = 20 * torch.randn(n, n, L, generator=torch.Generator().manual_seed(seed))
        assert float(global_local_bound(s, "infonce")) <= cap + 1e-6
    assert float(pairwise_bound(20 * torch.randn(n, n), "infonce")) <= math.log(n) + 1e-6


def test_infonce_uses_4032_negatives_at_batch_64():
    # all scores equal: the positive's softmax share is 1 / (1 + #negatives), and the bound adds
    # log(1 + #negatives), so it is 0 exactly when the negatives are the 63 * 64 other-image
    # locations (the image's own locations excluded); log(4033/4097) if they were included.
    s = torch.zeros(64, 64, 64, dtype=torch.float64)
    assert abs(float(global_local_bound(s, "infonce"))) < 1e-12


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bounds_are_finite_for_large_scores(estimator):
    s = 1e3 * torch.randn(8, 8, 4, generator=torch.Generator().manual_seed(3))
    s.requires_grad_(True)
    b = global_local_bound(s, estimator)
    b.backward()
    assert torch.isfinite(b) and torch.isfinite(s.grad).all()
    assert torch.isfinite(pairwise_bound(1e3 * torch.randn(8, 8), estimator))


def test_dv_is_the_log_mean_exp_over_other_images():
    s = torch.randn(5, 5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    off = ~torch.eye(5, dtype=torch.bool)
    expected = s.diagonal(dim1=0, dim2=1).mean() - torch.log(torch.exp(s[off]).mean())
    assert torch.allclose(global_local_bound(s, "dv"), expected)


def test_unknown_estimator_is_an_error():
    with pytest.raises(ValueError, match="unknown estimator"):
        global_local_bound(torch.zeros(2, 2, 2), "nwj")
