"""Neural dependency measure (NDM) of the code y (DIM_SPEC.md protocol 5; Hjelm et al. 2019, Sec. 4.1).

NDM measures how far the dimensions of y are from independent: a critic separates joint samples
(rows of y) from samples of the product of marginals (each dimension shuffled independently across
the batch: a per-column permutation), and the dependence is read off as a divergence.

- Critic: 64 -> 1000 ReLU -> 200 ReLU -> 1 (input width = code width), ``repeval.nets.mlp``.
- Training: Adam (``lr`` 1e-4 as in the paper) on the KL (f-divergence, "NWJ") bound
  E_P[T] - E_Q[exp(T - 1)] (:func:`repeval.estimators.kl_bound`), batch ``batch_size`` rows
  (paper 10,000; clipped to the number of training rows), a fresh per-column shuffle each step.
- Reported value: the Donsker-Varadhan estimate mean_P T - log mean_Q exp(T) on *held-out* rows
  (the test split), with ``eval_shuffles`` independent column shuffles as marginal samples.
  Near 0 means independent dimensions; it can be slightly negative (a held-out lower bound).
- ``ndm`` is measured on sigmoid(y) (the paper's), ``ndm_raw`` on raw y. With ``standardize``
  (default) each is z-scored per dimension with training statistics before the critic: a
  per-dimension invertible map leaves the dependence unchanged and keeps the critic's inputs at
  unit scale, so a code of small scale is not read as independent.

Plain array API: ``neural_dependency(z, seed=0, **options) -> float`` (z-scored per column unless
``standardize=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from repeval.config import make_config
from repeval.estimators import dv_bound, kl_bound
from repeval.nets import mlp
from repeval.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore
from repeval.seeding import derive_seed, generator


@dataclass(frozen=True)
class NDMConfig:
    steps: int = 10000
    batch_size: int = 10000       # the paper's; clipped to the number of training rows
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    hidden: tuple[int, ...] = (1000, 200)
    eval_shuffles: int = 8        # column shuffles of the held-out rows used as marginal samples
    max_eval: int = 10000         # held-out rows used (0 = all)
    standardize: bool = True      # z-score each dimension (train statistics) before the critic

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"ndm needs steps >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")


def shuffle_columns(z: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Sample of the product of marginals: every column permuted independently across rows."""
    idx = torch.rand(z.shape, generator=g).argsort(dim=0).to(z.device)
    return torch.gather(z, 0, idx)


@torch.no_grad()
def dv_dependency(critic: torch.nn.Module, z: torch.Tensor, *, shuffles: int, seed: int,
                  batch_size: int = 8192) -> float:
    """DV value mean_P T - log mean_Q e^T with Q = ``shuffles`` column shuffles of ``z``."""
    critic.eval()
    g = generator(seed)
    pos = torch.cat([critic(z[s:s + batch_size]).squeeze(1) for s in range(0, z.shape[0], batch_size)])
    neg = []
    for _ in range(shuffles):
        zq = shuffle_columns(z, g)
        neg.append(torch.cat([critic(zq[s:s + batch_size]).squeeze(1) for s in range(0, z.shape[0], batch_size)]))
    critic.train()
    return float(dv_bound(pos.double(), torch.cat(neg).double()))


def ndm_fit_eval(z_tr: torch.Tensor, z_te: torch.Tensor, cfg: NDMConfig, *, seed: int,
                 device: str | torch.device = "cpu") -> dict[str, float]:
    """Train the critic on ``z_tr`` with the KL bound; DV value on ``z_te`` (held out) and on train."""
    dev = torch.device(device)
    g_sub = generator(derive_seed(seed, "ndm-subsets"))
    if cfg.max_eval and z_te.shape[0] > cfg.max_eval:
        z_te = z_te[torch.randperm(z_te.shape[0], generator=g_sub)[:cfg.max_eval]]
    z_tr, z_te = z_tr.float().to(dev), z_te.float().to(dev)
    n, d = z_tr.shape
    bs = min(cfg.batch_size, n)
    torch.manual_seed(derive_seed(seed, "ndm-init"))
    critic = mlp([d, *cfg.hidden, 1]).to(dev)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    g = generator(derive_seed(seed, "ndm-batches"))
    bound = torch.zeros(())
    for step in range(cfg.steps):
        zb = z_tr if bs == n else z_tr[torch.randperm(n, generator=g)[:bs].to(dev)]
        zq = shuffle_columns(zb, g)
        bound = kl_bound(critic(zb).squeeze(1), critic(zq).squeeze(1))
        if not torch.isfinite(bound):
            raise ProtocolFailure(f"NDM critic diverged: non-finite KL bound at step {step + 1}/{cfg.steps}")
        opt.zero_grad(set_to_none=True)
        (-bound).backward()
        opt.step()
    value = dv_dependency(critic, z_te, shuffles=cfg.eval_shuffles, seed=derive_seed(seed, "ndm-eval"))
    sub = z_tr[torch.randperm(n, generator=g_sub)[:z_te.shape[0]].to(dev)]
    value_train = dv_dependency(critic, sub, shuffles=cfg.eval_shuffles, seed=derive_seed(seed, "ndm-eval-train"))
    if not math.isfinite(value):
        raise ProtocolFailure(f"NDM estimate is not finite ({value})")
    return {"ndm": value, "ndm_train": value_train, "kl_bound_last": float(bound.detach())}


def _as_tensor(a) -> torch.Tensor:
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return t.detach().cpu().float()


def neural_dependency(z, seed: int = 0, *, holdout: float = 0.5, device: str = "cpu", **options) -> float:
    """NDM (nats, DV value) of the columns of the 2-D array ``z`` (numpy or torch), z-scored per column
    on the training rows unless ``standardize=False``.

    A seeded ``holdout`` fraction of the rows (default half) is held out for the reported value;
    the critic trains on the rest. ``options`` are :class:`NDMConfig` fields (``steps``,
    ``batch_size``, ``lr``, ...).
    """
    z = _as_tensor(z)
    if z.dim() != 2 or z.shape[0] < 4:
        raise ValueError(f"neural_dependency expects a 2-D array with at least 4 rows, got {tuple(z.shape)}")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    cfg = make_config(NDMConfig, options, where="neural_dependency")
    perm = torch.randperm(z.shape[0], generator=generator(derive_seed(seed, "ndm-holdout")))
    n_te = max(2, int(round(z.shape[0] * holdout)))
    z_tr, z_te = z[perm[n_te:]], z[perm[:n_te]]
    if cfg.standardize:
        z_tr, z_te = zscore(z_tr, z_te)
    return ndm_fit_eval(z_tr, z_te, cfg, seed=seed, device=device)["ndm"]


REPORT = Reporting(columns=(ReportColumn("4", "ndm", "NDM", "ndm", fmt=".3f", paper="ndm"),), title="NDM",
                   footnote="NDM = protocol `ndm`, metric `ndm`")


@register_protocol("ndm", NDMConfig, taps="code", display="NDM", report=REPORT)
def ndm_protocol(inp: ProtocolInput, cfg: NDMConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """NDM of the code on sigmoid(y) (``ndm``, the paper's) and on raw y (``ndm_raw``).

    With ``standardize`` (default) both inputs are z-scored per dimension on train statistics first.
    A per-dimension affine map leaves the dependence between dimensions (what NDM measures) unchanged,
    but without it a code of small scale (e.g. a random-init y, where sigmoid(y) is ~0.5 +- 0.01)
    leaves the critic nothing it can fit in the budget and the measure reads 0 whatever the dependence.
    """
    y_tr, y_te = inp.train.features.float(), inp.test.features.float()
    prep = zscore if cfg.standardize else (lambda a, b: (a, b))
    sig = ndm_fit_eval(*prep(torch.sigmoid(y_tr), torch.sigmoid(y_te)), cfg, seed=derive_seed(seed, "sigmoid"),
                       device=device)
    raw = ndm_fit_eval(*prep(y_tr, y_te), cfg, seed=derive_seed(seed, "raw"), device=device)
    return {"ndm": sig["ndm"], "ndm_train": sig["ndm_train"], "ndm_raw": raw["ndm"],
            "ndm_raw_train": raw["ndm_train"]}
