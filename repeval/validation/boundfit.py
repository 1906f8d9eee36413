"""Train small critics with DIM's MI bounds on (X, Y) samples and read the bounds out.

Used by ``repeval validate`` to compare the DV, JSD and infoNCE objectives of
:mod:`repeval.estimators.bounds` (Hjelm et al. 2019, Eqs. 2-5; the bounds are computed by
:func:`repeval.estimators.bounds.pairwise_bound`) with MINE on distributions of known MI.

The critic is *separable*, T(x, y) = f(x) . g(y) with two small ReLU MLPs: the "encoder-and-dot"
form of DIM's own critics (Hjelm et al. 2019, Sec. 3), so a batch of K pairs gives a K x K score
matrix (diagonal = joint samples, off-diagonal = product of marginals) for 2K forward passes.
Several independent critics (one per (data set, estimator) job) are trained *stacked*, as one
batched network (``torch.baddbmm`` over a leading job axis): each job has its own data, weights
(initialised from its own seed), minibatches and loss, and Adam is elementwise, so this is
numerically the same training as one job at a time, at a fraction of the per-step overhead.

Readouts on held-out pairs, in batches of ``eval_batch`` (all nats except ``jsd``):
``dv`` = mean_P T - log mean_Q e^T (the MINE/DV value of the critic); ``infonce`` = E log softmax +
log K with K = ``eval_batch`` candidates, so it cannot exceed log K; ``jsd`` = DIM's JSD bound
E_P[-sp(-T)] - E_Q[sp(T)] + 2 log 2, a lower bound on 2 JSD(P_XY || P_X P_Y): NOT the MI in nats; it
lies in [0, 2 log 2] and grows with, but is not equal to, the MI. With a JSD-trained critic the DV
readout is still a valid MI lower bound (the JSD optimum is T* = log p(x,y)/p(x)p(y), as for DV).
The same readouts on an equally large training subset are returned with a ``_train`` suffix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..estimators.bounds import pairwise_bound
from ..seeding import derive_seed, generator

ESTIMATORS = ("dv", "jsd", "infonce")


@dataclass(frozen=True)
class BoundFitConfig:
    steps: int = 2000
    batch_size: int = 128        # K for training (and for the infoNCE readout: eval_batch)
    eval_batch: int = 128
    lr: float = 5e-4
    hidden: int = 256
    embed: int = 32
    holdout: float = 0.2         # fraction of the pairs used only for the readout


@dataclass(frozen=True)
class BoundJob:
    """One critic to train: pairs (x, y) (N, d), the estimator it maximises, its seed."""
    x: torch.Tensor
    y: torch.Tensor
    estimator: str
    seed: int


class StackedMLP(nn.Module):
    """M independent ReLU MLPs with the same sizes, applied to (M, B, in) -> (M, B, out).

    Member m is initialised like ``nn.Linear`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases) from its own seed, so its weights do not depend on the other members.
    """

    def __init__(self, sizes: list[int], seeds: list[int]):
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for li, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = torch.empty(len(seeds), a, b)
            bias = torch.empty(len(seeds), 1, b)
            for m, s in enumerate(seeds):
                g = generator(derive_seed(s, "stacked-mlp", li))
                bound = 1.0 / math.sqrt(a)
                w[m] = (torch.rand(a, b, generator=g) * 2 - 1) * bound
                bias[m] = (torch.rand(1, b, generator=g) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x


class StackedSeparableCritic(nn.Module):
    """Scores (M, K, K): T_m(x_i, y_j) = f_m(x_i) . g_m(y_j); f, g: d -> hidden -> hidden -> embed."""

    def __init__(self, dx: int, dy: int, hidden: int, embed: int, seeds: list[int]):
        super().__init__()
        self.f = StackedMLP([dx, hidden, hidden, embed], [derive_seed(s, "f") for s in seeds])
        self.g = StackedMLP([dy, hidden, hidden, embed], [derive_seed(s, "g") for s in seeds])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.f(x), self.g(y).transpose(1, 2))


@torch.no_grad()
def readouts(critic: StackedSeparableCritic, x: torch.Tensor, y: torch.Tensor, batch: int) -> list[dict]:
    """Per member, dv / jsd / infonce averaged over consecutive batches of ``batch`` pairs."""
    m = x.shape[0]
    sums = [{e: 0.0 for e in ESTIMATORS} for _ in range(m)]
    nb = max(1, x.shape[1] // batch)
    for b in range(nb):
        s = critic(x[:, b * batch:(b + 1) * batch], y[:, b * batch:(b + 1) * batch])
        for i in range(m):
            for e in ESTIMATORS:
                sums[i][e] += float(pairwise_bound(s[i], e))
    return [{e: v / nb for e, v in d.items()} for d in sums]


def fit_bounds(jobs: list[BoundJob], cfg: BoundFitConfig, *, device: str = "cpu") -> list[dict[str, float]]:
    """Train one separable critic per job (stacked, module docstring); held-out and train readouts.

    All jobs must have the same number of pairs and dimensions. Returns, per job, the readouts
    ``dv``, ``jsd``, ``infonce`` on its held-out pairs and ``dv_train``, ... on a training subset.
    """
    for j in jobs:
        if j.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator '{j.estimator}'; valid: {', '.join(ESTIMATORS)}")
    shapes = {(tuple(j.x.shape), tuple(j.y.shape)) for j in jobs}
    if len(shapes) != 1:
        raise ValueError(f"fit_bounds needs jobs of one shape, got {sorted(shapes)}")
    dev = torch.device(device)
    n = jobs[0].x.shape[0]
    n_eval = max(cfg.eval_batch, int(round(cfg.holdout * n)))
    if n - n_eval < 2:
        raise ValueError(f"too few pairs ({n}) for a hold-out of {n_eval}")
    splits = [torch.randperm(n, generator=generator(derive_seed(j.seed, "boundfit-split"))) for j in jobs]
    ev = torch.stack([p[:n_eval] for p in splits])
    tr = torch.stack([p[n_eval:] for p in splits])
    x = torch.stack([j.x for j in jobs]).float()
    y = torch.stack([j.y for j in jobs]).float()
    rows = torch.arange(len(jobs))[:, None]
    xtr, ytr = x[rows, tr].to(dev), y[rows, tr].to(dev)
    seeds = [derive_seed(j.seed, "boundfit-init", j.estimator) for j in jobs]
    critic = StackedSeparableCritic(x.shape[2], y.shape[2], cfg.hidden, cfg.embed, seeds).to(dev)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr)
    gens = [generator(derive_seed(j.seed, "boundfit-batches", j.estimator)) for j in jobs]
    n_tr, bs = xtr.shape[1], min(cfg.batch_size, xtr.shape[1])
    rows_d = rows.to(dev)
    for _ in range(cfg.steps):
        idx = torch.stack([torch.randint(0, n_tr, (bs,), generator=g) for g in gens]).to(dev)
        scores = critic(xtr[rows_d, idx], ytr[rows_d, idx])
        loss = -sum(pairwise_bound(scores[i], j.estimator) for i, j in enumerate(jobs))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    critic.eval()
    held = readouts(critic, x[rows, ev].to(dev), y[rows, ev].to(dev), cfg.eval_batch)
    sub = tr[:, :n_eval]
    train = readouts(critic, x[rows, sub].to(dev), y[rows, sub].to(dev), cfg.eval_batch)
    return [{**h, **{f"{k}_train": v for k, v in t.items()}} for h, t in zip(held, train)]


def fit_bound(x: torch.Tensor, y: torch.Tensor, estimator: str, cfg: BoundFitConfig, *, seed: int,
              device: str = "cpu") -> dict[str, float]:
    """One critic (see :func:`fit_bounds`)."""
    return fit_bounds([BoundJob(x, y, estimator, seed)], cfg, device=device)[0]
