"""The protocol contract's shared helpers (repeval/plugin/protocol.py): standardisation statistics. One thread, CPU."""
from __future__ import annotations

import pytest
import torch

from repeval.plugin.protocol import zscore, zscore_stats
from repeval.seeding import generator

pytestmark = pytest.mark.usefixtures("one_thread")


def test_zscore_stats_match_torch_and_do_not_depend_on_the_chunk():
    g = generator(0)
    x = torch.randn(1000, 7, generator=g) * torch.tensor([1.0, 2, 3, 1e3, 1e-3, 5, 1]) + 100.0
    x[:, 6] = 4.25                                                         # a constant column
    mu, sd = zscore_stats(x)
    ref = x.double().std(0).float()
    assert torch.equal(mu, x.mean(0)) and torch.allclose(sd[:6], ref[:6], rtol=1e-5) and sd[6] == 1
    mu7, sd7 = zscore_stats(x, chunk=7)
    assert torch.equal(mu7, mu) and torch.allclose(sd7, sd, rtol=1e-6)
    z, = zscore(x)
    keep = [0, 1, 2, 3, 5]                     # column 4 (std 1e-3 at 100) is below float32 resolution
    assert torch.allclose(z[:, keep].mean(0), torch.zeros(5), atol=1e-4) and torch.all(z[:, 6] == 0)
    assert torch.allclose(z[:, keep].std(0), torch.ones(5), atol=1e-4)
