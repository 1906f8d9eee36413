"""Autoencoder baseline (Hjelm et al. 2019, Sec. 4, baselines): shared encoder, y = code, MSE reconstruction."""
from __future__ import annotations

import torch.nn.functional as F

from repeval.estimators.nets import Decoder
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


@register_model("ae", "AE")
class AE(Family):
    order = 10   # position in `repeval list` and the default --models
    section = "ae"

    def __init__(self, cfg, n_classes=10, in_channels=3):
        super().__init__(cfg, n_classes, in_channels)
        self.decoder = Decoder(self.encoder.y_dim, in_channels)

    def train_step(self, x, labels, index, opt):
        with self.amp(x):
            loss = F.mse_loss(self.decoder(self.encoder(x)["y"]).float(), x)
        self.update(opt["model"], loss)
        return {"mse": loss.detach()}
