"""Non-linear classifier probe on frozen features (Table 1; Hjelm et al. 2019, Sec. 4).

The paper's head (:func:`repeval.estimators.nets.probe_head`: Linear(200) -> Dropout(0.1) -> BN1d -> ReLU ->
Linear(n_classes)), cross-entropy, trained on cached features for a fixed budget that is checked for
convergence (below):

- inputs standardised per column with the training split's mean and std (``standardize``; applied
  per minibatch, no standardised copy of the features);
- Adam (``lr`` 1e-3, betas (``beta1``, ``beta2``)), batch ``batch_size`` 128, ``epochs`` epochs with
  a per-step cosine decay of the learning rate to 0 (``schedule="cosine"``), or the paper's
  schedule (``schedule="multistep"``: Adam 1e-4, betas (0.5, 0.999), x ``gamma`` at ``milestones``,
  batch 64, 200 epochs);
- three seeds by default (the seed changes the initialisation, dropout and minibatch order).

Reported: ``accuracy`` (final test accuracy, %), ``accuracy_avg_last`` (mean test accuracy over the
last ``average_last`` epochs; the paper selected by averaging the last 100), ``train_accuracy`` (final,
eval mode), ``final_loss`` (mean training loss of the last epoch) and the convergence diagnostic, a
budget-halving test: the same seed is trained again with half the epochs (the same schedule
compressed: cosine over E // 2 epochs, multistep milestones halved; E = 1 compares with the untrained
head), ``accuracy_half_budget`` is its final test accuracy, ``gain_over_half_budget`` = ``accuracy`` -
``accuracy_half_budget``, and ``converged`` = (``gain_over_half_budget`` <= ``converge_gain``
points): doubling the budget no longer moved the accuracy, so a longer one would not either. (Within
one cosine run the second half always gains, because its learning rate anneals; only a separate run
at a smaller budget shows whether the budget is the limit. The check costs half a run per record.)
The rule reads test accuracy, as the paper's selection did; it is a diagnostic, never used to choose
a number.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from repeval.estimators.nets import probe_head
from repeval.estimators.optim import fused_adam
from repeval.plugin.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore_stats
from repeval.seeding import derive_seed, generator

SCHEDULES = ("cosine", "multistep")


@dataclass(frozen=True)
class MLPConfig:
    epochs: int = 20
    hidden: int = 200
    dropout: float = 0.1
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 128
    schedule: str = "cosine"              # "cosine" (per-step decay to 0) or "multistep" (the paper's)
    milestones: tuple[int, ...] = (50, 100)   # multistep only
    gamma: float = 0.1                    # multistep only
    standardize: bool = True
    average_last: int = 5                 # the window (epochs) of accuracy_avg_last
    converge_gain: float = 0.5            # converged when doubling the budget gains at most this (points)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"mlp.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.average_last < 1:
            raise ValueError(f"mlp.epochs and mlp.average_last must be >= 1 and mlp.batch_size >= 2, got "
                             f"{self.epochs}, {self.average_last}, {self.batch_size}")


@dataclass(frozen=True)
class ProbeFit:
    model: nn.Module
    mean: torch.Tensor | None          # (D,) standardisation statistics of the training split
    std: torch.Tensor | None
    test_curve: dict[int, float]       # epoch (0 = untrained) -> test accuracy %, for the evaluated epochs
    final_loss: float                  # mean training loss of the last epoch


def lr_factor(cfg: MLPConfig, step: int, total: int, epoch: int) -> float:
    """Learning-rate multiplier at global ``step`` of ``total`` (cosine) or at ``epoch`` (multistep)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor | None = None,
             std: torch.Tensor | None = None, batch_size: int = 4096) -> float:
    """Accuracy in % of ``model`` (eval mode) on raw features ``x`` (N, D), standardised per chunk."""
    model.eval()
    correct = 0
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        if mean is not None:
            xb = (xb - mean) / std
        correct += int((model(xb).argmax(1) == y[s:s + batch_size]).sum())
    return 100.0 * correct / max(1, x.shape[0])


def last_epochs(cfg: MLPConfig) -> list[int]:
    """The epochs ``accuracy_avg_last`` averages: the last min(average_last, epochs)."""
    return list(range(cfg.epochs - min(cfg.average_last, cfg.epochs) + 1, cfg.epochs + 1))


def half_budget(cfg: MLPConfig) -> MLPConfig | None:
    """The convergence check's configuration: half the epochs, the same schedule compressed (None
    for a one-epoch budget, whose half is the untrained head)."""
    if cfg.epochs < 2:
        return None
    return replace(cfg, epochs=cfg.epochs // 2, milestones=tuple(m // 2 for m in cfg.milestones))


def _pair_forward(models: list[nn.Sequential], xb: torch.Tensor) -> list[torch.Tensor]:
    """Training-mode forward of several probe heads (:func:`repeval.estimators.nets.probe_head`) on
    one minibatch, as one wide network: their first layers are one product (B, D) x (D, K * hidden)
    instead of K narrow ones, dropout and batch norm act
    per unit (so K side-by-side heads stay independent: each unit's batch statistics and running
    averages are its own, updated as :class:`torch.nn.BatchNorm1d` does), and each head keeps its
    own output layer. Returns the K logits (B, n_classes)."""
    if len(models) == 1:
        return [models[0](xb)]
    lin, drop, bn = models[0][0], models[0][1], models[0][2]
    h = F.linear(xb, torch.cat([m[0].weight for m in models]), torch.cat([m[0].bias for m in models]))
    h = F.dropout(h, drop.p, training=True)
    mu, var = h.mean(0), h.var(0, unbiased=False)
    with torch.no_grad():
        n, k = h.shape[0], lin.out_features
        unbiased = var * (n / max(1, n - 1))
        for i, m in enumerate(models):
            norm = m[2]
            norm.running_mean.lerp_(mu[i * k:(i + 1) * k], norm.momentum)
            norm.running_var.lerp_(unbiased[i * k:(i + 1) * k], norm.momentum)
            norm.num_batches_tracked += 1
    h = (h - mu) * torch.rsqrt(var + bn.eps)
    h = torch.relu(h * torch.cat([m[2].weight for m in models]) + torch.cat([m[2].bias for m in models]))
    return [m[4](h[:, i * k:(i + 1) * k]) for i, m in enumerate(models)]


def train_probes(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                 cfgs: list[MLPConfig], *, seed: int, curve: bool = False) -> list[ProbeFit]:
    """Train one probe per budget in ``cfgs`` (same seed) on raw features ``xtr`` (N, D), labels
    ``ytr`` (N,), in one pass; all tensors on one device.

    The probes start from the same seeded initialisation and see the same minibatches in the same
    order (the shuffle is seeded by (seed, epoch)), each under its own learning-rate schedule
    (:func:`lr_factor`) and its own Adam; a probe leaves the pass after its last epoch. They share
    each step's first-layer product (:func:`_pair_forward`; on cifar10-jpeg random-init features the
    whole protocol took 350 s against 355 s with a separate half-budget run: at batch 128 the
    products are not what costs). Test accuracy is measured for the first budget after its last
    epochs (:func:`last_epochs`) and of the untrained head (epoch 0), for the others after their
    final epoch; after every epoch of every budget with ``curve``.
    The settings other than ``epochs``/``milestones``/``gamma``/``lr`` must agree. Raises
    ProtocolFailure when a training loss becomes non-finite.
    """
    dev = xtr.device
    cfg0 = cfgs[0]
    if any(replace(c, epochs=cfg0.epochs, milestones=cfg0.milestones, gamma=cfg0.gamma, lr=cfg0.lr) != cfg0
           for c in cfgs):
        raise ValueError("train_probes: the budgets may differ only in epochs, milestones, gamma and lr")
    mean, std = zscore_stats(xtr) if cfg0.standardize else (None, None)
    torch.manual_seed(derive_seed(seed, "mlp-init"))
    first = probe_head(xtr.shape[1], n_classes, cfg0.hidden, cfg0.dropout).to(dev)
    models = [first] + [copy.deepcopy(first) for _ in cfgs[1:]]
    opts = [fused_adam(m.parameters(), c.lr, (c.beta1, c.beta2)) for m, c in zip(models, cfgs)]
    n, bs = xtr.shape[0], min(cfg0.batch_size, xtr.shape[0])
    per_epoch = max(1, (n - bs) // bs + 1)
    curves: list[dict[int, float]] = [{} for _ in cfgs]
    losses = [torch.zeros((), device=dev) for _ in cfgs]
    evals = [set(range(c.epochs + 1)) if curve else ({0, *last_epochs(c)} if i == 0 else {c.epochs})
             for i, c in enumerate(cfgs)]
    untrained = accuracy(first, xte, yte, mean, std)
    for i in range(len(cfgs)):
        if 0 in evals[i]:
            curves[i][0] = untrained
    for epoch in range(max(c.epochs for c in cfgs)):
        live = [i for i, c in enumerate(cfgs) if epoch < c.epochs]
        for i in live:
            models[i].train()
        perm = torch.randperm(n, generator=generator(derive_seed(seed, "mlp-shuffle", epoch))).to(dev)
        epoch_loss = torch.zeros(len(live), device=dev)
        for step, s in enumerate(range(0, n - bs + 1, bs)):
            for i in live:
                c = cfgs[i]
                for group in opts[i].param_groups:
                    group["lr"] = c.lr * lr_factor(c, epoch * per_epoch + step, c.epochs * per_epoch, epoch)
            idx = perm[s:s + bs]
            xb = xtr.index_select(0, idx)
            if mean is not None:
                xb = xb.sub_(mean).div_(std)
            yb = ytr[idx]
            batch = torch.stack([F.cross_entropy(out, yb) for out in _pair_forward([models[i] for i in live], xb)])
            for i in live:
                opts[i].zero_grad(set_to_none=True)
            batch.sum().backward()
            for i in live:
                opts[i].step()
            epoch_loss += batch.detach()
        if not torch.isfinite(epoch_loss).all():
            raise ProtocolFailure(f"mlp probe loss became {epoch_loss.tolist()} at epoch {epoch + 1}")
        for j, i in enumerate(live):
            losses[i] = epoch_loss[j]
            if epoch + 1 in evals[i]:
                curves[i][epoch + 1] = accuracy(models[i], xte, yte, mean, std)
    return [ProbeFit(m, mean, std, cv, float(lo) / per_epoch) for m, cv, lo in zip(models, curves, losses)]


def train_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                cfg: MLPConfig, *, seed: int, curve: bool = False) -> ProbeFit:
    """One probe at ``cfg``'s budget (:func:`train_probes` with one budget)."""
    return train_probes(xtr, ytr, xte, yte, n_classes, [cfg], seed=seed, curve=curve)[0]


def probe_metrics(fit: ProbeFit, half_accuracy: float, xtr: torch.Tensor, ytr: torch.Tensor,
                  cfg: MLPConfig) -> dict:
    """The reported numbers of one trained probe, given the half-budget run's final test accuracy
    ``half_accuracy`` (see the module docstring for the rule)."""
    acc = fit.test_curve[cfg.epochs]
    last = last_epochs(cfg)
    return {"accuracy": acc, "accuracy_avg_last": sum(fit.test_curve[e] for e in last) / len(last),
            "accuracy_half_budget": half_accuracy, "gain_over_half_budget": acc - half_accuracy,
            "converged": acc - half_accuracy <= cfg.converge_gain,
            "train_accuracy": accuracy(fit.model, xtr, ytr, fit.mean, fit.std), "final_loss": fit.final_loss}


def fit_with_check(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                   cfg: MLPConfig, *, seed: int) -> dict:
    """Train the probe at ``cfg``'s budget and at half of it (same seed, one pass); return
    :func:`probe_metrics`."""
    half = half_budget(cfg)
    fits = train_probes(xtr, ytr, xte, yte, n_classes, [cfg] + ([half] if half else []), seed=seed)
    half_accuracy = fits[1].test_curve[half.epochs] if half else fits[0].test_curve[0]
    return probe_metrics(fits[0], half_accuracy, xtr, ytr, cfg)


REPORT = Reporting(
    columns=tuple(ReportColumn("1", tap, tap, "accuracy", tap, paper=tap) for tap in ("conv", "fc", "y")),
    title="Non-linear classifier probe, test accuracy (%)",
    footnote="test accuracy (%) of the non-linear probe (protocol `mlp`, metric `accuracy`: accuracy after the "
             "last epoch of its schedule, mean over seeds; converged when the same seed at half the epochs is at "
             "most `converge_gain` points lower; the paper averaged test accuracy over its last 100 epochs) on "
             "frozen features at conv (last conv layer), fc (1024 units) and y (64-d code)",
    curve=True)


@register_protocol("mlp", MLPConfig, order=10, taps="all", seeds=3, display="Non-linear classifier", every_epoch=True,
                   report=REPORT, version=4)
def mlp_probe(inp: ProtocolInput, cfg: MLPConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Train the probe on ``inp.train`` features, return test accuracy in % and diagnostics (Table 1)."""
    dev = torch.device(device)
    xtr, ytr = inp.train.features.to(dev), inp.train.labels.to(dev)
    return fit_with_check(xtr, ytr, inp.test.features.to(dev), inp.test.labels.to(dev), inp.n_classes, cfg,
                          seed=seed)
