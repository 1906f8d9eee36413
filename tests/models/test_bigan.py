"""BiGAN (models/bigan.py): the encoder and generator learn against a frozen discriminator."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import build

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bigan_players_learn_against_a_frozen_discriminator(image_batch):
    x = image_batch[0][:12]
    fam = build("bigan")
    opts = fam.optimizers()
    fam.train()
    losses = []
    for _ in range(10):
        torch.manual_seed(7)
        real, fake = fam.forward_pairs(x)
        loss = fam.player_loss(real, fake)
        fam.update(opts["model"], loss)
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1e-3, losses
