"""NDM (protocols/ndm.py): near zero for an independent code, clearly positive for a correlated one,
deterministic; the z-scored and the raw (paper's) scale."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repeval.protocols.ndm import NDMConfig, ndm_protocol, neural_dependency, neural_dependency_details
from tests.helpers import code_input


NDM_FAST = dict(batch_size=256, hidden=(64, 32), eval_every=25, patience=3, lr=1e-3)


def correlated_code(n, d, seed, scale=1.0):
    g = np.random.default_rng(seed)
    z = np.sqrt(0.5) * g.standard_normal((n, 1)) + np.sqrt(0.5) * g.standard_normal((n, d))
    return (scale * z).astype(np.float32)                              # equicorrelated 0.5


def test_ndm_independent_near_zero_correlated_clearly_positive():
    z = np.random.default_rng(10).standard_normal((3000, 8)).astype(np.float32)
    r = neural_dependency_details(z, seed=0, **NDM_FAST)
    assert r["ndm_converged"] == 1.0 and abs(r["ndm_bound"]) < 0.05 and r["ndm"] == max(0.0, r["ndm_bound"])
    z = correlated_code(3000, 8, seed=11)                              # TC = 1/2 (7 log 2 - log 4.5) = 1.67
    v = neural_dependency(z, seed=0, **NDM_FAST)
    assert 1.0 < v < 1.9, v
    small = dict(steps=5, batch_size=64, hidden=(32, 8))
    assert neural_dependency(z[:200], seed=1, **small) == neural_dependency(z[:200], seed=1, **small)


def test_ndm_protocol_reports_zscored_and_raw_scale():
    """A random-init y has a tiny scale: sigmoid(y) ~ 0.5 +- 0.01. Dependence is scale-free: the
    z-scored ``ndm`` sees it; ``ndm_raw`` (the paper's scale, no z-scores) reads much less."""
    z = torch.from_numpy(correlated_code(3000, 8, seed=12, scale=0.01))
    inp = code_input(z[:2000], z[2000:])
    r = ndm_protocol(inp, NDMConfig(steps=1000, **NDM_FAST), seed=0)
    assert {"ndm", "ndm_raw", "ndm_stderr", "ndm_raw_stderr", "ndm_converged", "ndm_raw_converged",
            "ndm_late_gain", "ndm_raw_late_gain"} <= set(r)
    assert r["ndm"] > 1.0 and r["ndm_raw"] < 0.5 * r["ndm"], r
    assert r["ndm_steps_used"] == 1000 and r["ndm_converged"] == 1.0     # the protocol's cosine budget, levelled off


def test_ndm_cosine_config_is_checked():
    with pytest.raises(ValueError, match="cosine schedule needs"):
        NDMConfig(lr=1e-3, lr_final=1e-3)
    with pytest.raises(ValueError, match="ndm.schedule must be one of constant, cosine"):
        NDMConfig(schedule="step")
