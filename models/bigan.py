"""BiGAN / ALI with a deterministic encoder (Hjelm et al. 2019, Sec. 4, baselines; Donahue et al. 2017,
Dumoulin et al. 2017).

Generator G = :class:`repeval.estimators.nets.Decoder` (z ~ N(0, I_64) -> image), encoder E = the shared
encoder (x -> y, deterministic), joint discriminator D(x, z)
(:class:`repeval.estimators.critics.JointDiscriminator`: conv x-branch to 256 features, concat z, FC 512-128-1).
D separates (x, E(x)) from (G(z), z) with the GAN loss plus the gradient penalty
0.5 * E|grad_(x,z) D(x, E(x))|^2 on the real pairs only, as the authors' framework (cortex) runs its
penalty routine on its ALI discriminator (inputs: images and inferred codes, amount 0.5); E and G
minimise the non-saturating loss with the labels swapped,
E[softplus(D(x, E(x)))] + E[softplus(-D(G(z), z))]. Both players have their own Adam and are
updated in every step, discriminator first. z comes from torch's global RNG.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repeval.estimators.critics import JointDiscriminator, gan_losses_with_gp
from repeval.estimators.nets import Decoder
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


@register_model("bigan", "BiGAN")
class BiGAN(Family):
    order = 40   # position in `repeval list` and the default --models
    @dataclass(frozen=True)
    class Config:
        """``--set bigan.gp_weight=V``: weight of the discriminator's gradient penalty."""
        gp_weight: float = 1.0

    section = "bigan"

    def __init__(self, cfg, n_classes=10, in_channels=3, *, gp_weight: float = 1.0):
        super().__init__(cfg, n_classes, in_channels)
        self.gp_weight = gp_weight
        self.generator = Decoder(self.encoder.y_dim, in_channels)
        self.disc = JointDiscriminator(in_channels, self.encoder.y_dim)

    def optimizers(self):
        return {"model": self.adam(list(self.encoder.parameters()) + list(self.generator.parameters())),
                "disc": self.adam(self.disc.parameters())}

    def forward_pairs(self, x: torch.Tensor):
        """(x, E(x)) and (G(z), z) with z ~ N(0, I)."""
        z = torch.randn(x.shape[0], self.encoder.y_dim, device=x.device)
        with self.amp(x):
            e = self.encoder(x)["y"]
            xg = self.generator(z)
        return (x, e.float()), (xg.float(), z)

    def disc_losses(self, real, fake) -> tuple[torch.Tensor, torch.Tensor]:
        with self.amp(real[0]):
            return gan_losses_with_gp(self.disc, real, fake, penalize="real")

    def player_loss(self, real, fake) -> torch.Tensor:
        with self.amp(real[0]):
            d_real, d_fake = self.disc(*real).float(), self.disc(*fake).float()
        return F.softplus(d_real).mean() + F.softplus(-d_fake).mean()

    def train_step(self, x, labels, index, opt):
        real, fake = self.forward_pairs(x)
        gan, gp = self.disc_losses(real, fake)
        self.update(opt["disc"], gan + self.gp_weight * gp)
        ge = self.player_loss(real, fake)
        self.update(opt["model"], ge)
        return {"enc_gen": ge.detach(), "disc": gan.detach(), "gp": gp.detach()}
