"""Adversarial autoencoder baseline (Hjelm et al. 2019, Sec. 4, baselines; Makhzani et al. 2016, Sec. 2).

The AE of models/ae.py (same decoder, same mean-squared-error reconstruction) plus a
discriminator on the code y against the prior N(0, I): MLP 64-1000-200-1 (the DIM prior
discriminator), GAN loss with the zero-centred gradient penalty 0.5 * (|grad D(z)|^2 + |grad D(y)|^2),
non-saturating encoder loss E[softplus(-D(y))]. As in the AAE paper each batch runs two phases:
the reconstruction phase (encoder + decoder, their own Adam), then the regularisation phase (the
discriminator on a fresh forward's detached codes, then the encoder on the non-saturating loss,
each with its own Adam), so neither term needs a hand-set relative weight.
Prior samples come from torch's global RNG, reseeded per epoch by the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repeval.estimators.critics import gan_losses_with_gp, nonsaturating_loss, prior_discriminator
from repeval.estimators.nets import Decoder
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


@register_model("aae", "AAE")
class AAE(Family):
    order = 30   # position in `repeval list` and the default --models
    @dataclass(frozen=True)
    class Config:
        """``--set aae.gp_weight=V``: weight of the discriminator's gradient penalty."""
        gp_weight: float = 1.0

    section = "aae"

    def __init__(self, cfg, n_classes=10, in_channels=3, *, gp_weight: float = 1.0):
        super().__init__(cfg, n_classes, in_channels)
        self.gp_weight = gp_weight
        self.decoder = Decoder(self.encoder.y_dim, in_channels)
        self.disc = prior_discriminator(self.encoder.y_dim)

    def optimizers(self):
        return {"ae": self.adam(list(self.encoder.parameters()) + list(self.decoder.parameters())),
                "gen": self.adam(self.encoder.parameters()),
                "disc": self.adam(self.disc.parameters())}

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        with self.amp(x):
            xr = self.decoder(self.encoder(x)["y"])
        return F.mse_loss(xr.float(), x)

    def disc_losses(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = y.detach().float()
        return gan_losses_with_gp(self.disc, (torch.randn_like(y),), (y,))

    def train_step(self, x, labels, index, opt):
        rec = self.reconstruction_loss(x)
        self.update(opt["ae"], rec)
        with self.amp(x):
            y = self.encoder(x)["y"].float()
        gan, gp = self.disc_losses(y)
        self.update(opt["disc"], gan + self.gp_weight * gp)
        adv = nonsaturating_loss(self.disc(y))
        self.update(opt["gen"], adv)
        return {"mse": rec.detach(), "enc_adv": adv.detach(), "disc": gan.detach(), "gp": gp.detach()}
