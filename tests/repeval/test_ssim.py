"""SSIM and MS-SSIM (repeval/estimators/ssim.py): identity, monotone in noise, pytorch_msssim's numbers, images too
small refused. One thread, CPU."""
from __future__ import annotations

import pytest
import torch

from repeval.seeding import generator
from repeval.estimators.ssim import gaussian_window, ms_ssim, ssim, ssim_components, to_unit
from tests.helpers import smooth_images

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ssim_and_ms_ssim_identity_and_monotone_in_noise():
    x = smooth_images(8, 13)
    assert torch.allclose(ssim(x, x), torch.ones(8)) and torch.allclose(ms_ssim(x, x), torch.ones(8))
    g = generator(14)
    noise = torch.randn(x.shape, generator=g)
    s_vals, m_vals = [], []
    for level in (0.02, 0.05, 0.1, 0.2, 0.4, 0.8):
        y = (x + level * noise).clamp(-1, 1)
        s_vals.append(float(ssim(y, x).mean()))
        m_vals.append(float(ms_ssim(y, x).mean()))
    assert all(a > b for a, b in zip(s_vals, s_vals[1:])), s_vals
    assert all(a > b for a, b in zip(m_vals, m_vals[1:])), m_vals
    assert s_vals[0] < 1.0 and m_vals[0] < 1.0


def test_ssim_components_match_pytorch_msssim():
    from pytorch_msssim import ssim as ref
    x, y = smooth_images(4, 15), smooth_images(4, 16)
    ours = ssim_components(to_unit(x), to_unit(y), gaussian_window(11, 1.5))[0].mean(1)
    assert torch.allclose(ours, ref(to_unit(x), to_unit(y), data_range=1.0, size_average=False), atol=1e-5)


def test_ms_ssim_refuses_too_small_images():
    x = smooth_images(2, 17, size=16)
    with pytest.raises(ValueError, match="window"):
        ms_ssim(x, x)
