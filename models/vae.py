"""VAE and beta-VAE baselines (Hjelm et al. 2019, Sec. 4, baselines; Kingma & Welling 2014; Higgins et al. 2017).

Heads for mu and log-variance both read the ``fc`` layer; the shared encoder's ``out`` layer IS the
mu head, so the ``y`` tap (the representation every protocol sees) is mu. z = mu + sigma * eps with
eps from torch's global RNG (reseeded per epoch by the training loop) goes through
:class:`repeval.estimators.nets.Decoder`. Loss: squared error summed over each image's pixels, averaged over
the batch, plus beta * KL(q(z|x) || N(0, I)) (summed over the 64 dimensions, averaged over the
batch). ``vae``: beta = 1; ``beta-vae``: beta = 4 (the paper's value is unreleased; 4 chosen).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repeval.estimators.nets import Decoder
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


@register_model("beta-vae", "β-VAE", beta=4.0)
@register_model("vae", "VAE", beta=1.0)
class VAE(Family):
    order = 20   # position in `repeval list` and the default --models
    @dataclass(frozen=True)
    class Config:
        """``--set vae.beta=V``: the KL weight (1 for the VAE, 4 for the beta-VAE row)."""
        beta: float = 1.0

    section = "vae"

    def __init__(self, cfg, n_classes=10, in_channels=3, *, beta: float = 1.0):
        super().__init__(cfg, n_classes, in_channels)
        self.beta = beta
        fc_units = self.encoder.out.in_features
        self.logvar_head = nn.Linear(fc_units, self.encoder.y_dim)   # mu head = encoder.out
        self.decoder = Decoder(self.encoder.y_dim, in_channels)

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.amp(x):
            taps = self.encoder(x)
            logvar = self.logvar_head(taps["fc"])
        mu, logvar = taps["y"].float(), logvar.float()
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        with self.amp(x):
            xr = self.decoder(z)
        rec = (xr.float() - x).pow(2).flatten(1).sum(1).mean()
        kl = gaussian_kl(mu, logvar)
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}

    def train_step(self, x, labels, index, opt):
        losses = self.losses(x)
        self.update(opt["model"], losses["loss"])
        return {k: v.detach() for k, v in losses.items()}
