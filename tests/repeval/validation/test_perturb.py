"""Image perturbations of repeval/validation/perturb.py: ordered, seeded, the blur's window is SSIM's."""
from __future__ import annotations

import torch

from repeval.estimators.ssim import gaussian_window
from repeval.validation.perturb import add_noise, gaussian_blur, synthetic_images


def test_perturbations_are_ordered():
    x = synthetic_images(4, seed=0)
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(gaussian_blur(x, 0.0), x) and torch.equal(add_noise(x, 0.0, 1), x)
    errs = [float((gaussian_blur(x, s) - x).abs().mean()) for s in (0.5, 1.0, 2.0)]
    assert errs[0] < errs[1] < errs[2]
    assert torch.equal(add_noise(x, 0.1, 5), add_noise(x, 0.1, 5))
    # the blur's window is the SSIM window (one Gaussian), radius ceil(3 sigma): blurring a point
    # source away from the border reproduces its outer product
    dirac = torch.zeros(1, 1, 21, 21)
    dirac[0, 0, 10, 10] = 1.0
    w = gaussian_window(7, 1.0)
    assert torch.allclose(gaussian_blur(dirac, 1.0)[0, 0, 7:14, 7:14], w[:, None] * w[None, :], atol=1e-7)
