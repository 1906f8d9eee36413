"""MINE estimate of I(X; y) between images and their code (DIM_SPEC.md protocol 4; Table 4).

The authors never released this code; repeval's choices (Belghazi et al. 2018, "MINE"):

- Statistics network T(x, y): an x-branch (a conv net for images: convs 4x4/2/1 with
  ``conv_channels`` = 64, 128, 256 channels and LeakyReLU(0.2), then Linear to ``x_features``
  and ELU; for vectors an MLP d -> hidden -> x_features with ELU), its output
  concatenated with y, then ``layers`` dense layers of ``hidden`` units (ELU) and a scalar output.
- Objective: the Donsker-Varadhan bound E_P[T] - log E_Q[e^T] (MINE Eq. 10), trained with the
  moving-average gradient correction of MINE Sec. 3.2 (:func:`repeval.estimators.dv_ema_loss`,
  rate ``ema_rate``). Joint samples are (x_i, y_i); marginal samples pair the batch's x with the y
  of an independently drawn batch.
- Adam with a decaying learning rate: geometric from ``lr`` to ``lr_final`` over ``steps``.
- The reported value ``mi`` (nats) is the DV bound on *held-out* pairs (the test split), with
  ``eval_shuffles`` independent shuffles of y as marginal samples. ``mi_train`` is the same
  evaluation on a training subset of the same size (a large gap = the critic overfits).
- Diagnostics: the per-step batch bound is averaged over ``diag_chunks`` equal chunks of the run;
  ``still_increasing`` = 1 when the last chunk beats the one before by more than
  max(0.01 nats, 2%); ``diverged`` = 1 when the last chunk has fallen below the best chunk by more
  than max(0.05 nats, 25%) (a collapse). A non-finite loss raises :class:`ProtocolFailure`.
- Inputs are standardised per dimension with training statistics (an invertible map, so I(X; y)
  is unchanged); images are used as given, in [-1, 1].

MINE's estimates on images are critic-dependent, relative scores (DIM_SPEC.md), not absolute MI.
Plain array API (vectors): ``estimate_mi(x, y, seed=0, **options) -> float``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from repeval.config import make_config
from repeval.estimators import dv_bound, dv_ema_loss
from repeval.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore
from repeval.seeding import derive_seed, generator


@dataclass(frozen=True)
class MINEConfig:
    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-4
    lr_final: float = 1e-5        # geometric decay lr -> lr_final over the run
    beta1: float = 0.9
    beta2: float = 0.999
    ema_rate: float = 0.01        # MINE Sec. 3.2 moving average of E_Q[e^T]
    hidden: int = 512
    layers: int = 2               # dense layers after the concatenation
    x_features: int = 256         # width of the x branch output
    conv_channels: tuple[int, ...] = (64, 128, 256)   # image branch: one conv 4x4/2/1 per entry
    eval_shuffles: int = 16       # marginal samples per held-out joint sample
    max_eval: int = 10000         # held-out pairs used for the estimate (0 = all)
    max_train: int = 0            # training pairs used (0 = all)
    diag_chunks: int = 10

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"mine needs steps >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")
        if not 0.0 < self.ema_rate <= 1.0:
            raise ValueError(f"mine.ema_rate must be in (0, 1], got {self.ema_rate}")


# ----------------------------------------------------------------------------- networks

def conv_branch(in_channels: int, size: tuple[int, int], out_features: int,
                channels: tuple[int, ...] = (64, 128, 256)) -> nn.Sequential:
    """x-branch for images: (conv 4x4/2/1, LeakyReLU 0.2) per entry of ``channels``, then Linear, ELU."""
    h, w = size
    layers: list[nn.Module] = []
    c = in_channels
    for c_out in channels:
        layers += [nn.Conv2d(c, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
        c, h, w = c_out, h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"MINE conv branch: {len(channels)} stride-2 convs do not fit a {size} image")
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, out_features), nn.ELU())


def vector_branch(d: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, out_features), nn.ELU())


class StatisticsNetwork(nn.Module):
    """T(x, y) = head([branch(x), y]); ``embed`` / ``score`` let one x-embedding serve many y."""

    def __init__(self, x_shape: tuple[int, ...], y_dim: int, hidden: int = 512, layers: int = 2,
                 x_features: int = 256, conv_channels: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        if len(x_shape) == 3:
            self.branch = conv_branch(x_shape[0], (x_shape[1], x_shape[2]), x_features, tuple(conv_channels))
        elif len(x_shape) == 1:
            self.branch = vector_branch(x_shape[0], hidden, x_features)
        else:
            raise ValueError(f"MINE expects x of shape (C, H, W) or (D,), got {x_shape}")
        head: list[nn.Module] = []
        d = x_features + y_dim
        for _ in range(layers):
            head += [nn.Linear(d, hidden), nn.ELU()]
            d = hidden
        head.append(nn.Linear(d, 1))
        self.head = nn.Sequential(*head)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x)

    def score(self, hx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([hx, y], dim=1)).squeeze(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(x), y)


# ----------------------------------------------------------------------------- pure math

def chunk_diagnostics(curve: list[float], chunks: int) -> dict[str, float]:
    """``still_increasing`` / ``diverged`` flags from the per-step training bound (module docstring)."""
    arr = np.asarray(curve, dtype=np.float64)
    chunks = max(2, min(chunks, arr.size))
    means = np.array([c.mean() for c in np.array_split(arr, chunks)])
    last, prev, best = means[-1], means[-2], means.max()
    inc = last - prev > max(0.01, 0.02 * abs(prev))
    div = best - last > max(0.05, 0.25 * abs(best))
    return {"still_increasing": float(inc), "diverged": float(div), "train_bound_last": float(last),
            "train_bound_best": float(best)}


@torch.no_grad()
def dv_estimate(net: StatisticsNetwork, x: torch.Tensor, y: torch.Tensor, *, shuffles: int, seed: int,
                batch_size: int = 2048) -> float:
    """Held-out DV bound: mean_i T(x_i, y_i) - log mean_{i,k} exp T(x_i, y_{pi_k(i)})."""
    net.eval()
    n = x.shape[0]
    g = generator(seed)
    perms = [torch.randperm(n, generator=g).to(y.device) for _ in range(shuffles)]
    pos, neg = [], []
    for s in range(0, n, batch_size):
        hx = net.embed(x[s:s + batch_size])
        pos.append(net.score(hx, y[s:s + batch_size]))
        for p in perms:
            neg.append(net.score(hx, y[p[s:s + batch_size]]))
    net.train()
    return float(dv_bound(torch.cat(pos).double(), torch.cat(neg).double()))


def train_mine(x: torch.Tensor, y: torch.Tensor, cfg: MINEConfig, *, seed: int,
               device: str | torch.device = "cpu") -> tuple[StatisticsNetwork, list[float]]:
    """Fit T on joint pairs (x_i, y_i) with the EMA-corrected DV objective; returns (T, batch bounds).

    ``x`` (N, ...) and ``y`` (N, Dy) must already be on ``device``. Raises ProtocolFailure when the
    loss becomes non-finite.
    """
    dev = torch.device(device)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    torch.manual_seed(derive_seed(seed, "mine-init"))
    net = StatisticsNetwork(tuple(x.shape[1:]), y.shape[1], cfg.hidden, cfg.layers, cfg.x_features,
                            cfg.conv_channels).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    decay = (cfg.lr_final / cfg.lr) ** (1.0 / max(1, cfg.steps - 1)) if cfg.lr_final > 0 else 1.0
    g = generator(derive_seed(seed, "mine-batches"))
    log_ema = None
    curve: list[torch.Tensor] = []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * decay ** step
        idx = torch.randint(n, (bs,), generator=g).to(dev)
        idy = torch.randint(n, (bs,), generator=g).to(dev)
        hx = net.embed(x[idx])
        pos = net.score(hx, y[idx])
        neg = net.score(hx, y[idy])
        loss, log_ema = dv_ema_loss(pos, neg, log_ema, cfg.ema_rate)
        if not torch.isfinite(loss):
            raise ProtocolFailure(f"MINE diverged: non-finite loss {float(loss.detach())} at step {step + 1}/{cfg.steps}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(dv_bound(pos.detach(), neg.detach()))
    return net, torch.stack(curve).cpu().tolist()


def mine_fit_eval(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                  cfg: MINEConfig, *, seed: int, device: str | torch.device = "cpu") -> dict[str, float]:
    """Standardise y (and vector x), train T on the train pairs, evaluate the DV bound on both."""
    dev = torch.device(device)
    g = generator(derive_seed(seed, "mine-subsets"))
    if cfg.max_train and x_tr.shape[0] > cfg.max_train:
        keep = torch.randperm(x_tr.shape[0], generator=g)[:cfg.max_train]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if cfg.max_eval and x_te.shape[0] > cfg.max_eval:
        keep = torch.randperm(x_te.shape[0], generator=g)[:cfg.max_eval]
        x_te, y_te = x_te[keep], y_te[keep]
    x_tr, x_te, y_tr, y_te = (t.float() for t in (x_tr, x_te, y_tr, y_te))
    y_tr, y_te = zscore(y_tr, y_te)
    if x_tr.dim() == 2:
        x_tr, x_te = zscore(x_tr, x_te)
    x_tr, y_tr, x_te, y_te = (t.to(dev) for t in (x_tr, y_tr, x_te, y_te))
    net, curve = train_mine(x_tr, y_tr, cfg, seed=seed, device=dev)
    mi = dv_estimate(net, x_te, y_te, shuffles=cfg.eval_shuffles, seed=derive_seed(seed, "mine-eval"))
    sub = torch.randperm(x_tr.shape[0], generator=g)[:x_te.shape[0]].to(dev)
    mi_train = dv_estimate(net, x_tr[sub], y_tr[sub], shuffles=cfg.eval_shuffles,
                           seed=derive_seed(seed, "mine-eval-train"))
    if not (math.isfinite(mi) and math.isfinite(mi_train)):
        raise ProtocolFailure(f"MINE estimate is not finite (held-out {mi}, train {mi_train})")
    return {"mi": mi, "mi_train": mi_train, **chunk_diagnostics(curve, cfg.diag_chunks)}


# ----------------------------------------------------------------------------- array API

def _as_tensor(a) -> torch.Tensor:
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return t.detach().cpu().float()


def estimate_mi_details(x, y, seed: int = 0, *, folds: int = 2, device: str = "cpu",
                        **options) -> dict[str, float]:
    """:func:`estimate_mi` returning every number (``mi`` held-out, ``mi_train``, diagnostics).

    K-fold cross-fitting: the pairs are split into ``folds`` seeded folds; for each fold a critic
    is trained on the other folds and its DV bound is evaluated on the held-out fold. ``mi`` and
    ``mi_train`` are the means over folds (every pair is held out once, which halves the sampling
    variance of a single 50/50 split); the 0/1 flags are maxima over folds.
    """
    x, y = _as_tensor(x), _as_tensor(y)
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"estimate_mi expects 2-D arrays of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")
    if folds < 2 or x.shape[0] < 2 * folds:
        raise ValueError(f"estimate_mi needs folds >= 2 and at least 2 pairs per fold, got folds={folds}, n={x.shape[0]}")
    cfg = make_config(MINEConfig, options, where="estimate_mi")
    perm = torch.randperm(x.shape[0], generator=generator(derive_seed(seed, "mine-folds")))
    parts = torch.tensor_split(perm, folds)
    results = []
    for k in range(folds):
        te = parts[k]
        tr = torch.cat([p for j, p in enumerate(parts) if j != k])
        results.append(mine_fit_eval(x[tr], y[tr], x[te], y[te], cfg, seed=derive_seed(seed, "fold", k),
                                     device=device))
    out = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
    out["still_increasing"] = max(r["still_increasing"] for r in results)
    out["diverged"] = max(r["diverged"] for r in results)
    return out


def estimate_mi(x, y, seed: int = 0, **options) -> float:
    """MINE estimate of I(X; Y) in nats between the rows of 2-D arrays ``x`` and ``y``.

    Held-out DV bound with ``folds``-fold cross-fitting (default 2; see :func:`estimate_mi_details`).
    ``options`` are :class:`MINEConfig` fields (e.g. ``steps``, ``batch_size``, ``lr``), ``folds``
    and ``device``.
    """
    return estimate_mi_details(x, y, seed, **options)["mi"]


# ----------------------------------------------------------------------------- protocol

REPORT = Reporting(columns=(ReportColumn("4", "mine", "MINE", "mi", paper="mine"),), title="MINE",
                   footnote="MINE = protocol `mine`, metric `mi` (nats)")


@register_protocol("mine", MINEConfig, taps="code", needs_images=True, display="MINE I(X; y)", report=REPORT)
def mine_protocol(inp: ProtocolInput, cfg: MINEConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """MINE estimate of I(X; y) in nats between test images and their codes (critic trained on train)."""
    if inp.train.images is None or inp.test.images is None:
        raise ProtocolFailure("mine needs images (needs_images=True) but the input has none")
    return mine_fit_eval(inp.train.images, inp.train.features, inp.test.images, inp.test.features, cfg,
                         seed=seed, device=device)
