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


def train_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                cfg: MLPConfig, *, seed: int, curve: bool = False) -> ProbeFit:
    """Train the probe on raw features ``xtr`` (N, D), labels ``ytr`` (N,); all tensors on one device.

    Test accuracy is measured after the last epochs (:func:`last_epochs`) and of the untrained head
    (epoch 0), or after every epoch with ``curve``. Raises
    ProtocolFailure when the training loss becomes non-finite.
    """
    dev = xtr.device
    mean, std = zscore_stats(xtr) if cfg.standardize else (None, None)
    torch.manual_seed(derive_seed(seed, "mlp-init"))
    model = probe_head(xtr.shape[1], n_classes, cfg.hidden, cfg.dropout).to(dev)
    opt = fused_adam(model.parameters(), cfg.lr, (cfg.beta1, cfg.beta2))
    n, bs = xtr.shape[0], min(cfg.batch_size, xtr.shape[0])
    per_epoch = max(1, (n - bs) // bs + 1)
    total = cfg.epochs * per_epoch
    evals = set(range(cfg.epochs + 1)) if curve else {0, *last_epochs(cfg)}
    test_curve: dict[int, float] = {}
    if 0 in evals:
        test_curve[0] = accuracy(model, xte, yte, mean, std)
    epoch_loss = torch.zeros((), device=dev)
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=generator(derive_seed(seed, "mlp-shuffle", epoch))).to(dev)
        epoch_loss = torch.zeros((), device=dev)
        for i, s in enumerate(range(0, n - bs + 1, bs)):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, epoch * per_epoch + i, total, epoch)
            idx = perm[s:s + bs]
            xb = xtr.index_select(0, idx)
            if mean is not None:
                xb = xb.sub_(mean).div_(std)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.detach()
        if not torch.isfinite(epoch_loss):
            raise ProtocolFailure(f"mlp probe loss became {float(epoch_loss)} at epoch {epoch + 1}")
        if epoch + 1 in evals:
            test_curve[epoch + 1] = accuracy(model, xte, yte, mean, std)
    return ProbeFit(model, mean, std, test_curve, float(epoch_loss) / per_epoch)


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
    """Train the probe at ``cfg``'s budget and at half of it (same seed); return :func:`probe_metrics`."""
    fit = train_probe(xtr, ytr, xte, yte, n_classes, cfg, seed=seed)
    half = half_budget(cfg)
    half_accuracy = (train_probe(xtr, ytr, xte, yte, n_classes, half, seed=seed).test_curve[half.epochs]
                     if half else fit.test_curve[0])
    return probe_metrics(fit, half_accuracy, xtr, ytr, cfg)


REPORT = Reporting(
    columns=tuple(ReportColumn("1", tap, tap, "accuracy", tap, paper=tap) for tap in ("conv", "fc", "y")),
    title="Non-linear classifier probe, test accuracy (%)",
    footnote="test accuracy (%) of the non-linear probe (protocol `mlp`, metric `accuracy`: accuracy after the "
             "last epoch of its schedule, mean over seeds; converged when the same seed at half the epochs is at "
             "most `converge_gain` points lower; the paper averaged test accuracy over its last 100 epochs) on "
             "frozen features at conv (last conv layer), fc (1024 units) and y (64-d code)",
    curve=True)


@register_protocol("mlp", MLPConfig, order=10, taps="all", seeds=3, display="Non-linear classifier", every_epoch=True,
                   report=REPORT, version=3)
def mlp_probe(inp: ProtocolInput, cfg: MLPConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Train the probe on ``inp.train`` features, return test accuracy in % and diagnostics (Table 1)."""
    dev = torch.device(device)
    xtr, ytr = inp.train.features.to(dev), inp.train.labels.to(dev)
    return fit_with_check(xtr, ytr, inp.test.features.to(dev), inp.test.labels.to(dev), inp.n_classes, cfg,
                          seed=seed)
