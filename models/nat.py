"""Noise As Targets (Bojanowski & Joulin, ICML 2017; Hjelm et al. 2019, Sec. 4, baselines).

The features are the encoder's 64-d projection y (``encoder.out`` projects fc), L2-normalised;
each training image owns one of n_train fixed targets drawn uniformly on the unit sphere S^63
(normalised Gaussians from a generator seeded by derive_seed(seed, "nat-targets", n_train)). The
loss is the squared distance ||y/|y| - c_p(i)||^2 (mean over the batch). Before each update the
assignment p is re-solved among the batch's current targets with the Hungarian algorithm
(scipy.optimize.linear_sum_assignment, maximising the summed cosine), as in NAT's per-batch
updates. Targets and assignment are buffers allocated in :meth:`prepare`, so they are
checkpointed with the model and a resumed run continues with the same assignment.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repeval.seeding import derive_seed, generator
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model


def sphere_targets(n: int, dim: int, seed: int) -> torch.Tensor:
    """n points uniform on the unit sphere in R^dim (normalised standard Gaussians), seeded."""
    return F.normalize(torch.randn(n, dim, generator=generator(seed)), dim=1)


def hungarian(feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Column index for every row maximising sum_i feats_i . targets_perm(i) (a permutation)."""
    from scipy.optimize import linear_sum_assignment   # here: importing scipy.optimize costs every process ~0.5 s

    cost = -(feats.detach().float() @ targets.float().t()).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    out = torch.empty(len(rows), dtype=torch.long)
    out[torch.from_numpy(rows).long()] = torch.from_numpy(cols).long()
    return out.to(feats.device)


@register_model("nat", "NAT")
class NAT(Family):
    order = 50   # position in `repeval list` and the default --models
    section = "nat"

    def __init__(self, cfg, n_classes=10, in_channels=3):
        super().__init__(cfg, n_classes, in_channels)
        d = self.encoder.y_dim
        self.register_buffer("targets", torch.zeros(0, d))
        self.register_buffer("assignment", torch.zeros(0, dtype=torch.long))

    def prepare(self, n_train: int) -> None:
        dev = self.encoder.out.weight.device
        self.targets = sphere_targets(n_train, self.encoder.y_dim,
                                      derive_seed(self.cfg.seed, "nat-targets", n_train)).to(dev)
        self.assignment = torch.arange(n_train, device=dev)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the buffers' size is n_train: take it from the checkpoint (e.g. loaded without prepare)
        for name in ("targets", "assignment"):
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def losses(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.targets.shape[0] == 0:
            raise RuntimeError("NAT.prepare(n_train) must run before training (it allocates the targets)")
        with self.amp(x):
            y = self.encoder(x)["y"]
        f = F.normalize(y.float(), dim=1)
        current = self.assignment[index]                       # the batch's targets, reassigned
        new = current[hungarian(f, self.targets[current])]
        self.assignment[index] = new
        loss = (f - self.targets[new]).pow(2).sum(1).mean()
        return {"nat": loss}

    def train_step(self, x, labels, index, opt):
        losses = self.losses(x, index)
        self.update(opt["model"], losses["nat"])
        return {k: v.detach() for k, v in losses.items()}
