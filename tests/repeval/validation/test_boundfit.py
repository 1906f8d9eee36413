"""The stacked bound fitter (repeval/validation/boundfit.py): deterministic, infoNCE capped at log batch."""
from __future__ import annotations

import math

from repeval.validation import groundtruth as gt
from repeval.validation.boundfit import BoundFitConfig, fit_bound


def test_bound_fit_is_deterministic_and_infonce_is_capped(one_thread):
    x, y = gt.sample_correlated_gaussian(1200, 2, 0.999, seed=0)  # I = 6.2 nats > log 32 = 3.47
    cfg = BoundFitConfig(steps=60, batch_size=32, eval_batch=32, hidden=32, embed=8)
    a = fit_bound(x, y, "infonce", cfg, seed=1)
    assert a == fit_bound(x, y, "infonce", cfg, seed=1)
    assert a["infonce"] <= math.log(32) + 1e-6
    assert 0.0 <= a["jsd"] <= 2 * math.log(2) + 1e-6
