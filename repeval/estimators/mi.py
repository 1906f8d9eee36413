"""Mutual-information and dependence estimation cores: plain functions of tensors.

Shared by the MINE protocol (``protocols/mine.py``: I(X; Y) between two arrays or images and codes)
and the NDM protocol (``protocols/ndm.py``: dependence between the columns of one array). The
protocol files hold the configs and the wrappers; everything here is math on tensors plus the one
critic-fitting loop with its stop rule. References:

- Donsker-Varadhan (DV) bound I >= E_P[T] - log E_Q[e^T]: MINE, Belghazi et al. 2018, Eq. 10, with
  its moving-average gradient correction (Sec. 3.2, :func:`repeval.estimators.bounds.dv_ema_loss`).
- NWJ / f-divergence bound I >= E_P[T] - E_Q[e^(T - 1)]: Nguyen, Wainwright & Jordan 2010;
  Poole et al. 2019 ("On variational bounds of MI"), Eq. 8.
- infoNCE bound I >= E[log softmax_0] + log K: Oord et al. 2018; Poole et al. 2019, Eq. 12.
- Rank / Gaussian-copula transform: I(X; Y) is unchanged by an invertible map of each variable
  (Cover & Thomas, Sec. 2.8; Kraskov et al. 2004), so each dimension may be mapped to normal scores
  Phi^-1(F_n(x)) of its training empirical CDF F_n before the critic sees it.
- Stop rule: early stopping on a held-out (validation) value of the bound, best state kept
  (Prechelt 1998, "Early stopping - but when?"); or a fixed budget with a cosine learning-rate decay
  (Loshchilov & Hutter 2017) and a plateau test on the validation curve's last quarter.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch
from torch import nn

from ..seeding import derive_seed, generator
from . import ProtocolFailure
from .bounds import dv_ema_loss, kl_bound, log_mean_exp
from .nets import mlp
from .optim import fused_adam
from .zscore import zscore


@contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` intra-op CPU threads (None: unchanged), then restore the setting."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


ESTIMATORS = ("dv", "infonce", "nwj")
TRANSFORMS = ("copula", "zscore", "none")


# ----------------------------------------------------------------------------- inputs

def as_tensor(a) -> torch.Tensor:
    """A numpy array, list or tensor as a detached float32 CPU tensor."""
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return t.detach().cpu().float()


def copula_fit(train: torch.Tensor) -> torch.Tensor:
    """Sorted columns of ``train`` (N, D): the per-dimension empirical CDFs of the training split."""
    return train.float().sort(dim=0).values


def copula_apply(sorted_train: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Normal scores Phi^-1(u) of ``t`` (M, D) under the empirical CDFs ``sorted_train`` (N, D).

    u is the mid-rank of each value among the N training values, (rank + 1/2) / N, linearly
    interpolated between neighbouring training values (so the map is strictly increasing inside the
    training range, and constant beyond it) and kept in [1/(2N), 1 - 1/(2N)]. Ties get their average
    rank; a constant column maps to 0. On the training rows themselves (no ties) this is
    Phi^-1((i + 1/2) / N) for the i-th smallest value.
    """
    n = sorted_train.shape[0]
    s = sorted_train.t().contiguous()                                    # (D, N)
    v = t.float().t().contiguous()                                       # (D, M)
    left = torch.searchsorted(s, v, right=False).double()
    right = torch.searchsorted(s, v, right=True)
    pos = 0.5 * (left + right.double())                                 # mid-rank count in [0, N]
    inside = (left == right.double()) & (right > 0) & (right < n)        # strictly between two values
    i = right.clamp(1, n - 1)
    lo, hi = torch.gather(s, 1, i - 1).double(), torch.gather(s, 1, i).double()
    frac = ((v.double() - lo) / (hi - lo).clamp_min(1e-300)).clamp(0.0, 1.0)
    pos = torch.where(inside, i.double() - 0.5 + frac, pos).clamp(0.5, n - 0.5)
    return torch.special.ndtri(pos / n).float().t().contiguous()


def transform_columns(kind: str, train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Per-dimension invertible map fitted on ``train`` (N, D), applied to it and ``others`` (M, D).

    ``copula``: normal scores (:func:`copula_apply`); ``zscore``: (x - mean) / std
    (:func:`repeval.estimators.zscore.zscore`); ``none``: unchanged. Returns ``[train, *others]``.
    """
    if kind == "copula":
        s = copula_fit(train)
        return [copula_apply(s, t) for t in (train, *others)]
    if kind == "zscore":
        return zscore(train, *others)
    if kind == "none":
        return [train, *others]
    raise ValueError(f"unknown transform {kind!r}; valid: {', '.join(TRANSFORMS)}")


def shuffle_columns(z: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Sample of the product of marginals: every column of ``z`` (N, D) permuted independently."""
    idx = torch.rand(z.shape, generator=g).argsort(dim=0).to(z.device)
    return torch.gather(z, 0, idx)


# ----------------------------------------------------------------------------- bounds with errors

def bound_terms(estimator: str, pos: torch.Tensor, neg: torch.Tensor) -> tuple[float, float]:
    """(value, standard error) of a held-out DV or NWJ bound from scores on joint pairs ``pos`` (N,)
    and on product-of-marginals pairs ``neg`` (K, N) (K shuffles of the same N pairs).

    DV: mean(pos) - log mean(e^neg); NWJ: mean(pos) - mean(e^(neg - 1)). The standard error is the
    delta method: Var(pos)/N plus, for the negative term, the variance of the per-pair average over the
    K shuffles divided by N (the K shuffles reuse the same N values, so N, not K*N, is the count of
    independent draws; this is conservative). Computed in float64.
    """
    pos, neg = pos.double().reshape(-1), neg.double().reshape(-1, pos.numel())
    n = pos.numel()
    var_pos = pos.var(unbiased=True) / n if n > 1 else torch.zeros((), dtype=torch.float64)
    if estimator == "dv":
        lme = log_mean_exp(neg)
        w = torch.exp(neg - lme).mean(0)                   # e^T / mean e^T, averaged over shuffles
        value = pos.mean() - lme
    elif estimator == "nwj":
        w = torch.exp(neg - 1.0).mean(0)
        value = pos.mean() - w.mean()
    else:
        raise ValueError(f"bound_terms handles 'dv' and 'nwj', got {estimator!r}")
    var_neg = w.var(unbiased=True) / n if n > 1 else torch.zeros((), dtype=torch.float64)
    return float(value), float(torch.sqrt(var_pos + var_neg))


def infonce_terms(blocks: list[torch.Tensor]) -> tuple[float, float]:
    """(value, standard error) of the infoNCE bound from square score blocks ``S[i, j] = T(x_i, y_j)``
    (B, B) with the joint pairs on the diagonal: mean_i log softmax_j S[i, :]_i + log B, per block;
    blocks of unequal size add their own log B. Never exceeds log B (the known ceiling)."""
    vals = torch.cat([torch.log_softmax(b.double(), dim=1).diagonal() + math.log(b.shape[0]) for b in blocks])
    n = vals.numel()
    return float(vals.mean()), float(vals.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


# ----------------------------------------------------------------------------- critic networks

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
    """x-branch for vectors: Linear d -> hidden, ELU, Linear -> out_features, ELU."""
    return nn.Sequential(nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, out_features), nn.ELU())


class WithFeatures(nn.Module):
    """y -> [y, f(y)]: the input beside features of it (a skip connection by concatenation)."""

    def __init__(self, f: nn.Module):
        super().__init__()
        self.f = f

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y, self.f(y)], dim=1)


class StatisticsNetwork(nn.Module):
    """T(x, y) = head([branch(x), y_branch(y)]); ``embed`` / ``score`` let one x-embedding serve many y.

    ``x_shape`` (C, H, W) gets :func:`conv_branch`, (D,) gets :func:`vector_branch`. y is
    concatenated as it is, and with ``y_features`` > 0 also beside a :func:`vector_branch` of it to
    ``y_features`` (:class:`WithFeatures`: a dependence linear in y keeps its short path, a map
    mixing y's dimensions gets capacity). The head is ``layers`` dense layers of ``hidden`` units
    (ELU) and a scalar output.
    """

    def __init__(self, x_shape: tuple[int, ...], y_dim: int, hidden: int = 128, layers: int = 2,
                 x_features: int = 64, conv_channels: tuple[int, ...] = (64, 128, 256), y_features: int = 0):
        super().__init__()
        self.y_branch = WithFeatures(vector_branch(y_dim, hidden, y_features)) if y_features > 0 else nn.Identity()
        if len(x_shape) == 3:
            self.branch = conv_branch(x_shape[0], (x_shape[1], x_shape[2]), x_features, tuple(conv_channels))
        elif len(x_shape) == 1:
            self.branch = vector_branch(x_shape[0], hidden, x_features)
        else:
            raise ValueError(f"MINE expects x of shape (C, H, W) or (D,), got {x_shape}")
        head: list[nn.Module] = []
        d = x_features + y_dim + max(y_features, 0)
        for _ in range(layers):
            head += [nn.Linear(d, hidden), nn.ELU()]
            d = hidden
        head.append(nn.Linear(d, 1))
        self.head = nn.Sequential(*head)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (N, x_features)."""
        return self.branch(x)

    def score(self, hx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, x_features) and codes (N, Dy) -> scores (N,)."""
        return self.head(torch.cat([hx, self.y_branch(y)], dim=1)).squeeze(1)

    def score_matrix(self, hx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """All pairs: (B, x_features), (B, Dy) -> S (B, B) with S[i, j] = T(x_i, y_j)."""
        b, hy = hx.shape[0], self.y_branch(y)
        return self.head(torch.cat([hx.repeat_interleave(b, 0), hy.repeat(b, 1)], dim=1)).view(b, b)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.score(self.embed(x), y)


# ----------------------------------------------------------------------------- the stop rule

@dataclass(frozen=True)
class StopRule:
    """Early stopping on a held-out bound: evaluate every ``eval_every`` steps; stop after
    ``patience`` evaluations without a gain above ``min_delta`` nats over the best so far (then
    ``converged``), but not before ``min_steps`` (a critic's bound is often flat before it starts
    to learn); never run more than ``max_steps``. When ``lr_final`` is below the starting
    learning rate, a plateau first divides the rate by 10 (not below ``lr_final``), restores the best
    state and resets the patience; only a plateau at the floor stops the run.

    ``schedule="cosine"`` is a fixed budget instead: the learning rate decays from its start to
    ``lr_final`` along a half cosine over ``max_steps`` (Loshchilov & Hutter 2017, without restarts),
    patience never stops the run, and ``converged`` is the plateau test :func:`late_gain` on the
    validation curve (a single noisy evaluation can neither stop the run nor call it converged)."""

    max_steps: int
    eval_every: int
    patience: int
    min_delta: float = 0.0
    lr_final: float = 0.0
    min_steps: int = 0
    schedule: str = "constant"


SCHEDULES = ("constant", "cosine")


@dataclass
class FitResult:
    steps_used: int
    converged: bool
    best_value: float          # best held-out (validation) bound seen, nats
    best_step: int
    history: list[tuple[int, float]]
    late_gain: float = math.nan   # cosine schedule: :func:`late_gain`'s gain (nats)


def late_gain(history: list[tuple[int, float]], min_delta: float) -> tuple[float, bool]:
    """Is the validation curve still rising at the end of a fixed budget?

    Compares the mean of the evaluations in the last quarter of the steps with the mean of those in
    the quarter before: ``gain`` = mean(Q4) - mean(Q3). The curve has levelled off (``converged``)
    when the gain is at most max(``min_delta``, 2 standard errors of the difference), i.e. no rise
    that the evaluation noise does not explain. Fewer than two finite evaluations in either quarter:
    (nan, False)."""
    if not history:
        return math.nan, False
    end = history[-1][0]
    q3 = [v for s, v in history if end / 2 < s <= 3 * end / 4 and math.isfinite(v)]
    q4 = [v for s, v in history if s > 3 * end / 4 and math.isfinite(v)]
    if len(q3) < 2 or len(q4) < 2:
        return math.nan, False
    gain = float(np.mean(q4) - np.mean(q3))
    se = math.sqrt(np.var(q3, ddof=1) / len(q3) + np.var(q4, ddof=1) / len(q4))
    return gain, gain <= max(min_delta, 2 * se)


def fit_with_stop_rule(net: nn.Module, opt: torch.optim.Optimizer, step_loss: Callable[[int], torch.Tensor],
                       val_bound: Callable[[], float], rule: StopRule, *, what: str) -> FitResult:
    """Minimise ``step_loss(step)`` with ``opt`` under ``rule``; the best-validation state is loaded
    into ``net`` at the end. ``val_bound()`` evaluates the held-out bound of the current ``net``
    (it must leave ``net`` in train mode). A non-finite loss raises :class:`ProtocolFailure` naming
    ``what`` and the step."""
    if rule.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {rule.schedule!r}; valid: {', '.join(SCHEDULES)}")
    cosine = rule.schedule == "cosine"
    best, best_step, bad = -math.inf, 0, 0
    best_state = copy.deepcopy(net.state_dict())
    history: list[tuple[int, float]] = []
    lr = lr0 = opt.param_groups[0]["lr"]
    converged, step = False, 0
    for step in range(1, rule.max_steps + 1):
        if cosine:
            lr = rule.lr_final + (lr0 - rule.lr_final) * 0.5 * (1 + math.cos(math.pi * (step - 1) / rule.max_steps))
            for group in opt.param_groups:
                group["lr"] = lr
        loss = step_loss(step)
        if not torch.isfinite(loss):
            raise ProtocolFailure(f"{what} diverged: non-finite loss {float(loss.detach())} at step "
                                  f"{step}/{rule.max_steps}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % rule.eval_every and step != rule.max_steps:
            continue
        v = val_bound()
        history.append((step, v))
        if math.isfinite(v) and v > best:
            bad = 0 if v > best + rule.min_delta else bad + 1
            best, best_step = v, step
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
        if cosine or bad < rule.patience or step < rule.min_steps:
            continue
        if 0 < rule.lr_final < lr * (1 - 1e-9):
            lr = max(lr / 10, rule.lr_final)
            for group in opt.param_groups:
                group["lr"] = lr
            net.load_state_dict(best_state)
            bad = 0
            continue
        converged = True
        break
    net.load_state_dict(best_state)
    gain = math.nan
    if cosine:
        gain, converged = late_gain(history, rule.min_delta)
    return FitResult(step, converged, best, best_step, history, gain)


def plateau_flags(history: list[tuple[int, float]]) -> dict[str, float]:
    """``diverged`` = 1 when the last held-out value has fallen below the best by more than
    max(0.05 nats, 25 %) (a collapse the kept best state hides)."""
    vals = [v for _, v in history if math.isfinite(v)]
    if not vals:
        return {"diverged": 1.0}
    best, last = max(vals), vals[-1]
    return {"diverged": float(best - last > max(0.05, 0.25 * abs(best)))}


# ----------------------------------------------------------------------------- MINE: fit and evaluate

def _subset(n: int, k: int, g: torch.Generator) -> torch.Tensor | None:
    """A seeded subset of k of n indices, or None when k is 0 or >= n (keep all)."""
    return torch.randperm(n, generator=g)[:k] if k and n > k else None


def critic_loss(estimator: str, net: StatisticsNetwork, xb: torch.Tensor, yb: torch.Tensor, y_neg: torch.Tensor,
                log_ema: torch.Tensor | None, ema_rate: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One minibatch loss (the negated bound) of ``estimator`` on joint pairs (xb, yb) (B, ...), (B, Dy)
    and product-of-marginals pairs (xb, y_neg); returns (loss, new log-EMA for DV).

    ``dv``: MINE's EMA-corrected DV gradient (:func:`repeval.estimators.bounds.dv_ema_loss`); ``nwj``:
    -(mean T_P - mean e^(T_Q - 1)); ``infonce``: all B x B pairs of the batch, -(mean log softmax + log B).
    """
    hx = net.embed(xb)
    if estimator == "infonce":
        s = net.score_matrix(hx, yb)
        return -(torch.log_softmax(s, dim=1).diagonal().mean() + math.log(s.shape[0])), None
    pos, neg = net.score(hx, yb), net.score(hx, y_neg)
    if estimator == "dv":
        return dv_ema_loss(pos, neg, log_ema, ema_rate)
    return -(pos.mean() - torch.exp(neg - 1.0).mean()), None


@torch.no_grad()
def critic_value(estimator: str, net: StatisticsNetwork, x: torch.Tensor, y: torch.Tensor, *, perms: list[torch.Tensor],
                 block: int, chunk: int = 2048) -> tuple[float, float]:
    """Held-out (value, standard error) of ``estimator``'s bound for the critic ``net`` on pairs
    ``x`` (N, ...), ``y`` (N, Dy).

    DV / NWJ: negatives are the pairs (x_i, y_perm(i)) for each permutation in ``perms``
    (:func:`bound_terms`); infoNCE: consecutive blocks of ``block`` pairs, all pairs within a block
    (:func:`infonce_terms`, ceiling log ``block``). ``net`` is back in train mode afterwards.
    """
    net.eval()
    try:
        n = x.shape[0]
        if estimator == "infonce":
            blocks = []
            for s in range(0, n, block):
                if min(n, s + block) - s >= 2:
                    blocks.append(net.score_matrix(net.embed(x[s:s + block]), y[s:s + block]))
            return infonce_terms(blocks)
        pos, neg = [], [[] for _ in perms]
        for s in range(0, n, chunk):
            hx = net.embed(x[s:s + chunk])
            pos.append(net.score(hx, y[s:s + chunk]))
            for k, p in enumerate(perms):
                neg[k].append(net.score(hx, y[p[s:s + chunk]]))
        return bound_terms(estimator, torch.cat(pos), torch.stack([torch.cat(c) for c in neg]))
    finally:
        net.train()


class FitOptions(Protocol):
    """What the stop rule and the optimiser of a critic fit read (:func:`fit_with_stop_rule`)."""
    steps: int
    min_steps: int
    batch_size: int
    lr: float
    beta1: float
    beta2: float
    eval_shuffles: int
    eval_every: int
    patience: int
    min_delta: float
    lr_final: float
    schedule: str
    val_fraction: float
    max_val: int
    max_eval: int


class MINEOptions(FitOptions, Protocol):
    """The options of :func:`mine_fit_evaluate`; :class:`repeval.protocols.mine.MINEConfig` is one."""
    estimator: str
    transform: str
    ema_rate: float
    hidden: int
    layers: int
    x_features: int
    conv_channels: tuple[int, ...]
    max_train: int


class NDMOptions(FitOptions, Protocol):
    """The options of :func:`ndm_fit_score`; :class:`repeval.protocols.ndm.NDMConfig` is one."""
    hidden: tuple[int, ...]
    standardize: bool


def mine_fit_evaluate(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                      cfg: MINEOptions, *, seed: int, device: str | torch.device = "cpu") -> dict[str, float]:
    """Fit a statistics network T on training pairs and return its held-out bound (nats).

    Shapes: ``x_tr`` (N, Dx) or (N, C, H, W), ``y_tr`` (N, Dy), ``x_te`` / ``y_te`` likewise (M rows).

    1. Seeded subsets (``max_train`` / ``max_eval``); y, and x when it is a vector, get the
       per-dimension map ``cfg.transform`` fitted on the training pairs (:func:`transform_columns`).
       The critic is a :class:`StatisticsNetwork`; when x is a vector, y gets features from a
       branch of the same shape as x's (``x_features`` wide) beside itself: the roles of two vectors
       are symmetric, and a map that mixes y's dimensions (Czyz et al. 2023's spiral) needs as
       much capacity on y's side as on x's. Images keep the image critic of MINE (the code y
       concatenated to the image branch).
    2. A seeded ``val_fraction`` of the training pairs (at most ``max_val``) is held back; T trains on
       the rest with ``cfg.estimator``'s minibatch objective (:func:`critic_loss`; negatives pair the
       batch's x with the y of an independent batch) under the stop rule (:func:`fit_with_stop_rule`:
       the validation bound every ``eval_every`` steps, ``patience`` or the cosine budget
       ``cfg.schedule``, cap ``steps``, best state kept).
    3. The best T is evaluated on the test pairs (``bound``, ``stderr``) and on as many training pairs
       (``bound_train``: a large gap = overfitting).

    Returns ``bound``, ``stderr``, ``bound_train``, ``val_best``, ``steps_used``, ``converged``
    (constant schedule: 1.0 = stopped by patience, 0.0 = reached the cap; cosine: the plateau test),
    ``late_gain`` (cosine: :func:`late_gain`; else nan), ``diverged`` (:func:`plateau_flags`).
    """
    if cfg.estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {cfg.estimator!r}; valid: {', '.join(ESTIMATORS)}")
    dev = torch.device(device)
    g = generator(derive_seed(seed, "mine-split"))
    keep = _subset(x_tr.shape[0], cfg.max_train, g)
    if keep is not None:
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    keep = _subset(x_te.shape[0], cfg.max_eval, g)
    if keep is not None:
        x_te, y_te = x_te[keep], y_te[keep]
    x_tr, x_te, y_tr, y_te = (t.float() for t in (x_tr, x_te, y_tr, y_te))
    y_tr, y_te = transform_columns(cfg.transform, y_tr, y_te)
    if x_tr.dim() == 2:
        x_tr, x_te = transform_columns(cfg.transform, x_tr, x_te)
    n = x_tr.shape[0]
    n_val = min(max(2, int(round(cfg.val_fraction * n))), cfg.max_val or n, n - 2)
    perm = torch.randperm(n, generator=g)
    val, fit = perm[:n_val], perm[n_val:]
    x_fit, y_fit, x_val, y_val = (t.to(dev) for t in (x_tr[fit], y_tr[fit], x_tr[val], y_tr[val]))
    x_te, y_te = x_te.to(dev), y_te.to(dev)
    images = x_fit.dim() == 4
    if images:   # NHWC for the conv branch (1.02-1.09x per step on 2 AVX2 cores, fp32)
        x_fit, x_val, x_te = (t.contiguous(memory_format=torch.channels_last) for t in (x_fit, x_val, x_te))
    n_fit, bs = x_fit.shape[0], min(cfg.batch_size, x_fit.shape[0])

    torch.manual_seed(derive_seed(seed, "mine-init"))
    net = StatisticsNetwork(tuple(x_fit.shape[1:]), y_fit.shape[1], cfg.hidden, cfg.layers, cfg.x_features,
                            cfg.conv_channels, y_features=cfg.x_features if x_fit.dim() == 2 else 0).to(dev)
    if images:
        net = net.to(memory_format=torch.channels_last)
    opt = fused_adam(net.parameters(), cfg.lr, (cfg.beta1, cfg.beta2))
    g_batch = generator(derive_seed(seed, "mine-batches"))
    val_perms = [torch.randperm(n_val, generator=g).to(dev) for _ in range(cfg.eval_shuffles)]
    ema: list[torch.Tensor | None] = [None]

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.randint(n_fit, (bs,), generator=g_batch).to(dev)
        idy = torch.randint(n_fit, (bs,), generator=g_batch).to(dev)
        loss, ema[0] = critic_loss(cfg.estimator, net, x_fit[idx], y_fit[idx], y_fit[idy], ema[0], cfg.ema_rate)
        return loss

    def val_bound() -> float:
        return critic_value(cfg.estimator, net, x_val, y_val, perms=val_perms, block=bs)[0]

    rule = StopRule(cfg.steps, cfg.eval_every, cfg.patience, cfg.min_delta, cfg.lr_final, cfg.min_steps, cfg.schedule)
    fit_res = fit_with_stop_rule(net, opt, step_loss, val_bound, rule, what=f"MINE ({cfg.estimator})")
    m = x_te.shape[0]
    te_perms = [torch.randperm(m, generator=g).to(dev) for _ in range(cfg.eval_shuffles)]
    bound, stderr = critic_value(cfg.estimator, net, x_te, y_te, perms=te_perms, block=bs)
    sub = torch.randperm(n_fit, generator=g)[:m].to(dev)
    bound_train, _ = critic_value(cfg.estimator, net, x_fit[sub], y_fit[sub],
                                  perms=[p[p < sub.numel()] for p in te_perms], block=bs)
    if not (math.isfinite(bound) and math.isfinite(bound_train)):
        raise ProtocolFailure(f"MINE estimate is not finite (held-out {bound}, train {bound_train})")
    return {"bound": bound, "stderr": stderr, "bound_train": bound_train, "val_best": fit_res.best_value,
            "steps_used": float(fit_res.steps_used), "converged": float(fit_res.converged),
            "late_gain": fit_res.late_gain, **plateau_flags(fit_res.history)}


# ----------------------------------------------------------------------------- NDM: fit and score

@torch.no_grad()
def dependence_value(critic: nn.Module, z: torch.Tensor, shuffled: list[torch.Tensor],
                     chunk: int = 8192) -> tuple[float, float]:
    """Held-out DV value mean_P T - log mean_Q e^T and its standard error (:func:`bound_terms`) of
    ``critic`` on rows ``z`` (N, D), with Q the column-shuffled copies ``shuffled`` (each (N, D))."""
    critic.eval()
    try:
        def scores(t):
            return torch.cat([critic(t[s:s + chunk]).squeeze(1) for s in range(0, t.shape[0], chunk)])
        return bound_terms("dv", scores(z), torch.stack([scores(q) for q in shuffled]))
    finally:
        critic.train()


def ndm_fit_score(z_tr: torch.Tensor, z_te: torch.Tensor, cfg: NDMOptions, *, seed: int,
                  device: str | torch.device = "cpu") -> dict[str, float]:
    """Neural dependency measure of the columns of z: fit a critic on ``z_tr`` (N, D), score ``z_te`` (M, D).

    Hjelm et al. 2019, Sec. 4.1: the
    critic (D -> hidden... -> 1, ReLU) separates rows of z (joint) from column-shuffled rows (product
    of marginals), trained on the KL (NWJ) bound E_P[T] - E_Q[e^(T - 1)]
    (:func:`repeval.estimators.bounds.kl_bound`) with a fresh shuffle of a ``batch_size`` batch each step;
    the value is the DV estimate on held-out rows. With ``standardize`` both splits are z-scored with
    the training statistics first. A seeded ``val_fraction`` of ``z_tr`` (at most ``max_val`` rows)
    drives the stop rule or the cosine budget (``cfg.schedule``; :func:`fit_with_stop_rule`, DV value on
    fixed shuffles, best state kept).

    Returns ``bound`` (held-out DV value, nats), ``stderr``, ``bound_train``, ``val_best``,
    ``steps_used``, ``converged``, ``late_gain``, ``diverged`` as in :func:`mine_fit_evaluate`.
    """
    dev = torch.device(device)
    g = generator(derive_seed(seed, "ndm-split"))
    keep = _subset(z_te.shape[0], cfg.max_eval, g)
    if keep is not None:
        z_te = z_te[keep]
    z_tr, z_te = transform_columns("zscore" if cfg.standardize else "none", z_tr.float(), z_te.float())
    n = z_tr.shape[0]
    n_val = min(max(2, int(round(cfg.val_fraction * n))), cfg.max_val or n, n - 2)
    perm = torch.randperm(n, generator=g)
    z_val, z_fit = z_tr[perm[:n_val]].to(dev), z_tr[perm[n_val:]].to(dev)
    z_te = z_te.to(dev)
    n_fit, d = z_fit.shape
    bs = min(cfg.batch_size, n_fit)
    torch.manual_seed(derive_seed(seed, "ndm-init"))
    critic = mlp([d, *cfg.hidden, 1]).to(dev)
    opt = fused_adam(critic.parameters(), cfg.lr, (cfg.beta1, cfg.beta2))
    g_batch = generator(derive_seed(seed, "ndm-batches"))
    val_q = [shuffle_columns(z_val, g) for _ in range(cfg.eval_shuffles)]

    def step_loss(step: int) -> torch.Tensor:
        zb = z_fit if bs == n_fit else z_fit[torch.randperm(n_fit, generator=g_batch)[:bs].to(dev)]
        return -kl_bound(critic(zb).squeeze(1), critic(shuffle_columns(zb, g_batch)).squeeze(1))

    rule = StopRule(cfg.steps, cfg.eval_every, cfg.patience, cfg.min_delta, min_steps=cfg.min_steps,
                    lr_final=cfg.lr_final if cfg.schedule == "cosine" else 0.0, schedule=cfg.schedule)
    fit_res = fit_with_stop_rule(critic, opt, step_loss, lambda: dependence_value(critic, z_val, val_q)[0], rule,
                                 what="NDM critic")
    bound, stderr = dependence_value(critic, z_te, [shuffle_columns(z_te, g) for _ in range(cfg.eval_shuffles)])
    sub = z_fit[torch.randperm(n_fit, generator=g)[:z_te.shape[0]].to(dev)]
    bound_train, _ = dependence_value(critic, sub, [shuffle_columns(sub, g) for _ in range(cfg.eval_shuffles)])
    if not math.isfinite(bound):
        raise ProtocolFailure(f"NDM estimate is not finite ({bound})")
    return {"bound": bound, "stderr": stderr, "bound_train": bound_train, "val_best": fit_res.best_value,
            "steps_used": float(fit_res.steps_used), "converged": float(fit_res.converged),
            "late_gain": fit_res.late_gain, **plateau_flags(fit_res.history)}
