"""Deep InfoMax (Hjelm et al., ICLR 2019): DIM(G), DIM(L) with three estimators, DIM(L+G).

Objective (paper Eq. 8): maximise alpha * I_global + beta * I_local and match sigmoid(y) to
U[0,1]^64 with weight gamma. Everything below follows Hjelm et al. 2019, Sec. 3:

* Local term (Sec. 3.2): the 128x8x8 map M and y go through "encoder-and-dot" 1x1-conv critics
  (:class:`repeval.estimators.critics.DotCritic`) to D = ``critic_units`` channels (``dim.critic_units``); scores
  u_ij(l) = G_i . L_j(l) form an (N, N, L) tensor scored by
  :func:`repeval.estimators.bounds.global_local_bound`: positives (i, i, l), negatives every location of
  every other image (4032 per positive at batch 64 for infoNCE).
* Global term (Sec. 3.1): the released ``GlobalDIM`` form, not the paper's concatenation: M goes
  through a copy of the encoder's remaining layers (conv 256, fc 1024) ending in Linear(1024, D)
  (:func:`repeval.estimators.critics.global_dim_net`), y through Linear(64, D) (the released global net for a
  64-d y with ``layers[global_idx:]``); scores are the (N, N) dot products, scored by
  :func:`repeval.estimators.bounds.pairwise_bound`.
* Estimators: dim-l-* as named. dim-g and dim-lg use JSD for every term: JSD (``measure='JSD',
  mode='fd'``) is the default of both the released ``GlobalDIM`` and ``LocalDIM`` routines, and
  the paper states no other estimator for its DIM(G) / DIM(L+G) rows.
* Prior matching (Sec. 3.3): discriminator MLP 64-1000-200-1 on sigmoid(y) vs z ~ U[0,1]^64
  (torch's global RNG, reseeded per epoch by the training loop), GAN loss with the zero-centred
  gradient penalty 0.5 * (|grad D(z)|^2 + |grad D(sigmoid y)|^2) (weight ``gp_weight``), encoder
  term gamma * E[softplus(-D(sigmoid y))] (non-saturating). The discriminator has its own Adam
  and is updated first, on the detached codes of the same forward pass.
* Weights: DIM(G) alpha=1 beta=0 gamma=1; DIM(L) alpha=0 beta=1 gamma=0.1; DIM(L+G) alpha=0.5
  beta=0.1 gamma=0.1 (gamma unstated in the paper: 0.1 chosen).
* Adam lr 1e-4, betas (0.5, 0.999) from ``cfg``, for encoder + critics and for the discriminator.
* With ``precision='bf16'`` the encoder and critics run under autocast; the dot-product scores,
  the bounds and every loss are computed in fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repeval.config import ConfigError
from repeval.estimators.critics import DotCritic, gan_losses_with_gp, global_dim_net, nonsaturating_loss, prior_discriminator
from repeval.estimators.bounds import global_local_bound, pairwise_bound
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model

ESTIMATORS = ("jsd", "dv", "infonce")
LOCAL_CHANNELS = 128  # channels of the local map M (SharedEncoder block2)


def fp32(t: torch.Tensor):
    """Autocast off: scores and bounds are computed in fp32 even when the networks run in bf16."""
    return torch.autocast(t.device.type, enabled=False)


def local_scores(g: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Scores (N, N, L) = G_i . L_j(l) from global embeddings (N, D) and local ones (N, L, D)."""
    n, L, d = l.shape
    return (g.reshape(n, d) @ l.reshape(n * L, d).t()).view(n, n, L)


@register_model("dim-lg", "DIM(L+G)", estimator="jsd", alpha=0.5, beta=0.1, gamma=0.1)
@register_model("dim-l-infonce", "DIM(L) (infoNCE)", estimator="infonce", alpha=0.0, beta=1.0, gamma=0.1)
@register_model("dim-l-jsd", "DIM(L) (JSD)", estimator="jsd", alpha=0.0, beta=1.0, gamma=0.1)
@register_model("dim-l-dv", "DIM(L) (DV)", estimator="dv", alpha=0.0, beta=1.0, gamma=0.1)
@register_model("dim-g", "DIM(G)", estimator="jsd", alpha=1.0, beta=0.0, gamma=1.0)
class DIM(Family):
    """Deep InfoMax with weights (alpha, beta, gamma) and one estimator for its MI terms."""
    order = 60   # position in `repeval list` and the default --models

    @dataclass(frozen=True)
    class Config:
        """``--set dim.KEY=V``: Eq. 8's weights, the MI estimator, the prior's gradient-penalty weight
        and D, the critics' embedding width (the paper's 2048)."""
        estimator: str = "infonce"
        alpha: float = 0.0
        beta: float = 1.0
        gamma: float = 0.1
        gp_weight: float = 1.0
        critic_units: int = 2048

        def __post_init__(self):
            if self.estimator not in ESTIMATORS:
                raise ConfigError(f"dim.estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")

    section = "dim"
    version = 1

    def __init__(self, cfg, n_classes=10, in_channels=3, *, estimator: str = "infonce",
                 alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.1, gp_weight: float = 1.0,
                 critic_units: int = 2048):
        super().__init__(cfg, n_classes, in_channels)
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown DIM estimator '{estimator}'; valid: {', '.join(ESTIMATORS)}")
        self.estimator, self.alpha, self.beta, self.gamma, self.gp_weight = estimator, alpha, beta, gamma, gp_weight
        self.critic_units = critic_units
        units, y_dim = critic_units, self.encoder.y_dim
        if beta > 0:
            self.local_net = DotCritic(LOCAL_CHANNELS, units)
            self.local_global_net = DotCritic(y_dim, units)
        if alpha > 0:
            self.global_m_net = global_dim_net(LOCAL_CHANNELS, units)
            self.global_y_net = nn.Linear(y_dim, units)
        if gamma > 0:
            self.prior_disc = prior_discriminator(y_dim)

    def optimizers(self):
        main = [p for n, p in self.named_parameters() if not n.startswith("prior_disc.")]
        opts = {"model": self.adam(main)}
        if self.gamma > 0:
            opts["prior"] = self.adam(self.prior_disc.parameters())
        return opts

    # -- pieces (also used by the tests) ---------------------------------------------------------
    def mi_terms(self, taps) -> dict[str, torch.Tensor]:
        """Negated MI bounds (losses) of the active terms, in fp32."""
        out = {}
        m, y = taps["local"], taps["y"]
        if self.beta > 0:
            g, loc = self.local_global_net(y), self.local_net(m)
            with fp32(y):
                out["local"] = -global_local_bound(local_scores(g.float(), loc.float()), self.estimator)
        if self.alpha > 0:
            gy, gm = self.global_y_net(y), self.global_m_net(m)
            with fp32(y):
                out["global"] = -pairwise_bound(gy.float() @ gm.float().t(), self.estimator)
        return out

    def prior_disc_losses(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Discriminator GAN loss and gradient penalty: z ~ U[0,1]^64 vs sigmoid(y) (detached)."""
        q = torch.sigmoid(y.detach().float())
        return gan_losses_with_gp(self.prior_disc, (torch.rand_like(q),), (q,))

    def prior_encoder_loss(self, y: torch.Tensor) -> torch.Tensor:
        """E[softplus(-D(sigmoid y))]: the encoder's non-saturating prior-matching term."""
        return nonsaturating_loss(self.prior_disc(torch.sigmoid(y.float())))

    def encoder_loss(self, taps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.mi_terms(taps)
        total = torch.zeros((), device=taps["y"].device)
        if "global" in terms:
            total = total + self.alpha * terms["global"]
        if "local" in terms:
            total = total + self.beta * terms["local"]
        if self.gamma > 0:
            terms["prior_enc"] = self.prior_encoder_loss(taps["y"])
            total = total + self.gamma * terms["prior_enc"]
        return total, terms

    def train_step(self, x, labels, index, opt):
        with self.amp(x):
            taps = self.encoder(x, local=True)
        losses = {}
        if self.gamma > 0:   # discriminator first, on the detached codes of this forward pass
            gan, gp = self.prior_disc_losses(taps["y"])
            self.update(opt["prior"], gan + self.gp_weight * gp)
            losses.update(prior_disc=gan.detach(), gp=gp.detach())
        with self.amp(x):
            total, terms = self.encoder_loss(taps)
        self.update(opt["model"], total)
        return {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}, **losses}
