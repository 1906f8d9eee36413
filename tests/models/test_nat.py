"""Noise As Targets (models/nat.py): the targets are checkpointed and reassigned among a batch's own."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import build, run_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nat_targets_are_checkpointed_and_reassigned(image_batch):
    x, labels = image_batch[0][:16], image_batch[1][:16]
    fam = build("nat")
    run_steps(fam, x, labels, steps=3, n_train=128)
    t, a = fam.targets, fam.assignment
    assert t.shape == (128, 64) and torch.allclose(t.norm(dim=1), torch.ones(128), atol=1e-5)
    assert sorted(a.tolist()) == list(range(128))          # still a permutation
    assert set(a[:16].tolist()) == set(range(16))          # reassigned only among the batch's targets
    assert "targets" in fam.state_dict() and "assignment" in fam.state_dict()
    again = build("nat")
    again.prepare(128)
    assert torch.equal(again.targets, t)                    # seeded by derive_seed(cfg.seed, ...)
