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

How it is computed (ours, not the paper's): the seeds of one call (``mlp_probes``, the runner's
``batch`` entry point; ``mlp_probe`` is the same code with one seed) and their two budgets train in
one pass (:func:`train_seeds`). Each step gathers every seed's own minibatch into an (S, B, D) stack
and multiplies it by the seeds' first layers in one batched product (S, B, D) x (S, D, K * hidden),
the K budgets side by side (the weight gradient is one product per seed, faster on CPU); dropout,
batch norm and ReLU act per unit, each probe has its own output layer, and one Adam step updates
every probe (one parameter group per budget, for its learning-rate schedule; moments per
parameter). Per seed stay its initialisation, minibatch order and dropout masks (each from its own
derived seed), so a seed's numbers do not depend on which seeds share the call: an interrupted run
that asks only for the missing seeds writes the same records. A seed's two budgets share its
initialisation, minibatches and dropout masks: the half-budget run is that seed trained for half
the epochs. Three seeds in one call against version 4's three one-seed calls (one thread, 2,560
test rows, a loaded 2-core AVX2 host): 19.9 s vs 23.0 s on 12,800 x 8,192 features for 2 epochs,
11.3 s vs 13.8 s on 12,800 x 1,024 for 10 epochs, 0.69 s vs 1.21 s on 1,437 x 64 for 20.
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
    train_accuracy: float | None = None   # final training accuracy %, when measured in the pass


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


class _FirstLayer(torch.autograd.Function):
    """``b + x w^T`` per seed: x (S, B, D), w (S, M, D), b (S, 1, M) -> (S, B, M), one batched
    product. The weight gradient is computed per seed (``mm``: at B = 128, D = 8,192, M = 400 one
    batched product took 69 ms for three seeds, three products 38 ms) into w's (S, M, D) layout
    (autograd's own bmm backward returns it transposed, and AccumulateGrad's copy back into that
    layout took as long as the products); the features get no gradient."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x)
        return torch.baddbmm(b, x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        gw = grad.new_empty(grad.shape[0], grad.shape[2], x.shape[2])
        for s in range(grad.shape[0]):
            torch.mm(grad[s].t(), x[s], out=gw[s])
        return None, gw, grad.sum(1, keepdim=True)


class _Heads:
    """S seeds x K budgets of probe heads (:func:`repeval.estimators.nets.probe_head`) side by side.

    Storage: first layers ``w1`` (S, K * hidden, D) (probe (s, k) is rows k * hidden .. (k + 1) *
    hidden of seed s, an ``nn.Linear`` weight), the per-unit vectors ``b1``, ``g``, ``beta`` (batch
    norm's affine) and running statistics ``rm``, ``rv`` (S, 1, K * hidden), output layers ``w2``
    (S, K, C, hidden) and ``b2`` (S, K, 1, C). ``params[s][k]`` are probe (s, k)'s parameters as
    contiguous views of that storage (what Adam updates in place); :meth:`leaves` are views over
    the first ``live`` budgets that autograd differentiates, so the step's products read the storage
    without a copy and the gradients come back as one tensor per kind, sliced per probe
    (:meth:`set_grads`). The budgets are stored longest first: those still training are a prefix."""

    def __init__(self, inits: list[nn.Sequential], k: int, dev: torch.device):
        self.inits = inits
        lin, bn = inits[0][0], inits[0][2]
        self.hidden, self.eps, self.momentum = lin.out_features, bn.eps, bn.momentum

        def side_by_side(get):   # (S, 1, K * hidden): the seed's vector repeated for its K budgets
            return torch.stack([get(m).detach().repeat(k) for m in inits]).unsqueeze(1).to(dev)
        self.w1 = torch.stack([m[0].weight.detach().repeat(k, 1) for m in inits]).to(dev)
        self.b1, self.g, self.beta = (side_by_side(f) for f in (lambda m: m[0].bias, lambda m: m[2].weight,
                                                               lambda m: m[2].bias))
        self.rm, self.rv = side_by_side(lambda m: m[2].running_mean), side_by_side(lambda m: m[2].running_var)
        self.w2 = torch.stack([m[4].weight.detach().expand(k, -1, -1) for m in inits]).contiguous().to(dev)
        self.b2 = torch.stack([m[4].bias.detach().expand(k, -1) for m in inits]).unsqueeze(2).contiguous().to(dev)
        self.params = [[self._views((self.w1, self.b1, self.g, self.beta, self.w2, self.b2), s, j) for j in range(k)]
                       for s in range(len(inits))]

    def _views(self, kinds, s: int, j: int) -> list[torch.Tensor]:
        w1, b1, g, beta, w2, b2 = kinds
        u = slice(j * self.hidden, (j + 1) * self.hidden)
        return [w1[s, u], b1[s, 0, u], g[s, 0, u], beta[s, 0, u], w2[s, j], b2[s, j, 0]]

    def leaves(self, live: int) -> list[torch.Tensor]:
        """Views of the first ``live`` budgets' parameters (all seeds) that require grad."""
        u = live * self.hidden
        return [t.requires_grad_() for t in (self.w1[:, :u], self.b1[..., :u], self.g[..., :u], self.beta[..., :u],
                                            self.w2[:, :live], self.b2[:, :live])]

    def set_grads(self, leaves: list[torch.Tensor], live: int) -> None:
        """Each live probe's gradients: views of the leaves' gradients; the others' None (Adam skips them)."""
        grads = [t.grad for t in leaves]
        for s, probes in enumerate(self.params):
            for j, params in enumerate(probes):
                for p, gr in zip(params, self._views(grads, s, j) if j < live else [None] * len(params)):
                    p.grad = gr

    def forward(self, leaves: list[torch.Tensor], xb: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
        """Training-mode forward of the live probes on the seeds' minibatches ``xb`` (S, B, D) ->
        logits (S, live, B, C): one batched first-layer product, dropout (``masks`` (S, B, 1,
        hidden): one per seed, shared by its budgets), batch norm per unit (batch statistics and
        running averages as :class:`torch.nn.BatchNorm1d`), ReLU, each probe's output layer."""
        w1, b1, g, beta, w2, b2 = leaves
        n_seeds, b, live, hid = xb.shape[0], xb.shape[1], w2.shape[1], self.hidden
        h = _FirstLayer.apply(xb, w1, b1)                                      # (S, B, live * hidden)
        if masks is not None:
            h = (h.view(n_seeds, b, live, hid) * masks).view(n_seeds, b, live * hid)
        mu = h.mean(1, keepdim=True)
        h = h - mu
        var = h.square().mean(1, keepdim=True)     # two passes: torch.var over dim 1 is ~10x slower here
        with torch.no_grad():
            self.rm[..., :live * hid].lerp_(mu, self.momentum)
            self.rv[..., :live * hid].lerp_(var * (b / max(1, b - 1)), self.momentum)
        h = torch.relu(h * torch.rsqrt(var + self.eps) * g + beta)
        return torch.matmul(h.view(n_seeds, b, live, hid).transpose(1, 2), w2.transpose(2, 3)) + b2

    @torch.no_grad()
    def accuracies(self, j: int, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor | None,
                   std: torch.Tensor | None, batch_size: int = 4096) -> list[float]:
        """Accuracy in % of budget ``j``'s probe of every seed (eval mode) on raw features ``x`` (N,
        D), standardised per chunk (the seeds share each chunk; one batched product per chunk)."""
        u = slice(j * self.hidden, (j + 1) * self.hidden)
        correct = torch.zeros(self.w1.shape[0], dtype=torch.long, device=x.device)
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            if mean is not None:
                xb = (xb - mean) / std
            h = torch.baddbmm(self.b1[..., u], xb.expand(self.w1.shape[0], -1, -1), self.w1[:, u].transpose(1, 2))
            h = torch.relu_((h - self.rm[..., u]) * torch.rsqrt(self.rv[..., u] + self.eps) * self.g[..., u]
                            + self.beta[..., u])
            logits = torch.baddbmm(self.b2[:, j], h, self.w2[:, j].transpose(1, 2))
            correct += (logits.argmax(2) == y[s:s + batch_size]).sum(1)
        return [100.0 * c / max(1, x.shape[0]) for c in correct.tolist()]

    def module(self, s: int, j: int, steps: int) -> nn.Sequential:
        """Probe (s, j) as a :func:`repeval.estimators.nets.probe_head` (a copy), ``steps`` its batches."""
        w1, b1, g, beta, w2, b2 = self.params[s][j]
        u = slice(j * self.hidden, (j + 1) * self.hidden)
        m = copy.deepcopy(self.inits[s]).to(self.w1.device)
        m.load_state_dict({"0.weight": w1, "0.bias": b1, "2.weight": g, "2.bias": beta,
                           "2.running_mean": self.rm[s, 0, u], "2.running_var": self.rv[s, 0, u],
                           "2.num_batches_tracked": torch.tensor(steps), "4.weight": w2, "4.bias": b2})
        return m


def train_seeds(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                cfgs: list[MLPConfig], *, seeds: tuple[int, ...] | list[int], curve: bool = False,
                train_accuracy: bool = False) -> list[list[ProbeFit]]:
    """Train one probe per seed in ``seeds`` and budget in ``cfgs`` on raw features ``xtr`` (N, D),
    labels ``ytr`` (N,), in one pass; all tensors on one device. Returns, per seed, the fits of
    ``cfgs`` in order.

    Per seed (as if trained alone): the initialisation (``derive_seed(seed, "mlp-init")``), the
    minibatch order (``derive_seed(seed, "mlp-shuffle", epoch)``) and the dropout masks (a generator
    seeded by ``derive_seed(seed, "mlp-dropout")``, one (B, hidden) mask per step), so a seed's
    numbers do not depend on the other seeds of the call. Per probe: its learning-rate schedule
    (:func:`lr_factor`) and Adam moments; a budget leaves the pass after its last epoch. The
    budgets of one seed share its initialisation, minibatches and dropout masks. Shared: each
    step's first-layer product, one batched (S, B, D) x (S, D, K * hidden) product over the seeds'
    own minibatches (:class:`_Heads`), and one Adam step (one parameter group per budget).
    Test accuracy is measured for the first budget after its last epochs (:func:`last_epochs`)
    and of the untrained head (epoch 0), for the others after their final epoch; after every epoch
    of every budget with ``curve``; with ``train_accuracy`` the first budget's final training
    accuracy is stored in its fit. The settings other than ``epochs``/``milestones``/``gamma``/``lr``
    must agree. Raises ProtocolFailure naming the seeds whose training loss became non-finite.
    """
    dev = xtr.device
    cfg0, seeds = cfgs[0], tuple(seeds)
    if any(replace(c, epochs=cfg0.epochs, milestones=cfg0.milestones, gamma=cfg0.gamma, lr=cfg0.lr) != cfg0
           for c in cfgs):
        raise ValueError("train_seeds: the budgets may differ only in epochs, milestones, gamma and lr")
    if not seeds:
        return []
    mean, std = zscore_stats(xtr) if cfg0.standardize else (None, None)
    order = sorted(range(len(cfgs)), key=lambda i: -cfgs[i].epochs)     # storage slot -> budget
    slot = {i: j for j, i in enumerate(order)}
    budgets = [cfgs[i] for i in order]
    inits = []
    with torch.random.fork_rng(devices=[]):
        for s in seeds:
            torch.manual_seed(derive_seed(s, "mlp-init"))
            inits.append(probe_head(xtr.shape[1], n_classes, cfg0.hidden, cfg0.dropout))
    heads = _Heads(inits, len(cfgs), dev)
    opt = fused_adam([p for probes in heads.params for p in probes[0]], budgets[0].lr, (cfg0.beta1, cfg0.beta2))
    for j in range(1, len(budgets)):
        opt.add_param_group({"params": [p for probes in heads.params for p in probes[j]], "lr": budgets[j].lr})
    n, bs, n_seeds = xtr.shape[0], min(cfg0.batch_size, xtr.shape[0]), len(seeds)
    per_epoch = max(1, (n - bs) // bs + 1)
    p_drop, hid = cfg0.dropout, cfg0.hidden
    drop = [generator(derive_seed(s, "mlp-dropout"), dev) for s in seeds] if p_drop > 0 else []
    curves: list[list[dict[int, float]]] = [[{} for _ in cfgs] for _ in seeds]
    losses = torch.zeros(n_seeds, len(cfgs), device=dev)
    evals = [set(range(c.epochs + 1)) if curve else ({0, *last_epochs(c)} if i == 0 else {c.epochs})
             for i, c in enumerate(cfgs)]
    if any(0 in e for e in evals):
        untrained = heads.accuracies(0, xte, yte, mean, std)
        for s in range(n_seeds):
            for i in range(len(cfgs)):
                if 0 in evals[i]:
                    curves[s][i][0] = untrained[s]
    leaves, live_now = [], 0
    for epoch in range(budgets[0].epochs):
        live = sum(epoch < c.epochs for c in budgets)
        if live != live_now:
            leaves, live_now = heads.leaves(live), live
        perms = torch.stack([torch.randperm(n, generator=generator(derive_seed(s, "mlp-shuffle", epoch)))
                             for s in seeds]).to(dev)
        epoch_loss = torch.zeros(n_seeds, live, device=dev)
        for step, o in enumerate(range(0, n - bs + 1, bs)):
            for j in range(live):
                c = budgets[j]
                opt.param_groups[j]["lr"] = c.lr * lr_factor(c, epoch * per_epoch + step, c.epochs * per_epoch, epoch)
            idx = perms[:, o:o + bs]                                           # (S, B): each seed's minibatch
            xb = xtr.index_select(0, idx.reshape(-1)).view(n_seeds, bs, -1)
            if mean is not None:
                xb = xb.sub_(mean).div_(std)
            masks = None
            if drop:
                masks = torch.stack([torch.rand(bs, hid, device=dev, generator=g).lt_(1 - p_drop)
                                     for g in drop]).div_(1 - p_drop).unsqueeze(2)     # Bernoulli(1 - p) / (1 - p)
            logits = heads.forward(leaves, xb, masks)                          # (S, live, B, C)
            yb = ytr[idx].unsqueeze(1).expand(n_seeds, live, bs)
            batch = F.cross_entropy(logits.reshape(-1, n_classes), yb.reshape(-1), reduction="none")
            batch = batch.view(n_seeds, live, bs).mean(2)                      # (S, live): one loss per probe
            for t in leaves:
                t.grad = None
            batch.sum().backward()
            heads.set_grads(leaves, live)
            opt.step()
            epoch_loss += batch.detach()
        finite = torch.isfinite(epoch_loss).all(1).tolist()
        if not all(finite):
            bad = [k for k, ok in enumerate(finite) if not ok]
            raise ProtocolFailure(f"mlp probe loss became non-finite at epoch {epoch + 1} for seed(s) "
                                  f"{', '.join(str(seeds[k]) for k in bad)}: "
                                  f"{[epoch_loss[k].tolist() for k in bad]}")
        losses[:, :live] = epoch_loss
        for j in range(live):
            i = order[j]
            if epoch + 1 in evals[i]:
                accs = heads.accuracies(j, xte, yte, mean, std)
                for s in range(n_seeds):
                    curves[s][i][epoch + 1] = accs[s]
    train_acc = heads.accuracies(slot[0], xtr, ytr, mean, std) if train_accuracy else [None] * n_seeds
    losses = losses.tolist()
    return [[ProbeFit(heads.module(s, slot[i], c.epochs * per_epoch), mean, std, curves[s][i],
                      losses[s][slot[i]] / per_epoch, train_acc[s] if i == 0 else None)
             for i, c in enumerate(cfgs)] for s in range(n_seeds)]


def train_probes(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                 cfgs: list[MLPConfig], *, seed: int, curve: bool = False) -> list[ProbeFit]:
    """One probe per budget in ``cfgs``, one seed, in one pass (:func:`train_seeds` with one seed)."""
    return train_seeds(xtr, ytr, xte, yte, n_classes, cfgs, seeds=(seed,), curve=curve)[0]


def train_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                cfg: MLPConfig, *, seed: int, curve: bool = False) -> ProbeFit:
    """One probe at ``cfg``'s budget (:func:`train_seeds` with one seed and one budget)."""
    return train_probes(xtr, ytr, xte, yte, n_classes, [cfg], seed=seed, curve=curve)[0]


def probe_metrics(fit: ProbeFit, half_accuracy: float, xtr: torch.Tensor, ytr: torch.Tensor,
                  cfg: MLPConfig) -> dict:
    """The reported numbers of one trained probe, given the half-budget run's final test accuracy
    ``half_accuracy`` (see the module docstring for the rule); the training accuracy is the fit's
    when it carries one, else measured here."""
    acc = fit.test_curve[cfg.epochs]
    last = last_epochs(cfg)
    train_acc = fit.train_accuracy
    if train_acc is None:
        train_acc = accuracy(fit.model, xtr, ytr, fit.mean, fit.std)
    return {"accuracy": acc, "accuracy_avg_last": sum(fit.test_curve[e] for e in last) / len(last),
            "accuracy_half_budget": half_accuracy, "gain_over_half_budget": acc - half_accuracy,
            "converged": acc - half_accuracy <= cfg.converge_gain,
            "train_accuracy": train_acc, "final_loss": fit.final_loss}


def fit_with_check_seeds(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
                         n_classes: int, cfg: MLPConfig, *, seeds: tuple[int, ...] | list[int]) -> list[dict]:
    """Train every seed's probe at ``cfg``'s budget and at half of it (one pass, :func:`train_seeds`);
    return :func:`probe_metrics` per seed."""
    half = half_budget(cfg)
    out = []
    for fits in train_seeds(xtr, ytr, xte, yte, n_classes, [cfg] + ([half] if half else []), seeds=seeds,
                            train_accuracy=True):
        half_accuracy = fits[1].test_curve[half.epochs] if half else fits[0].test_curve[0]
        out.append(probe_metrics(fits[0], half_accuracy, xtr, ytr, cfg))
    return out


def fit_with_check(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, n_classes: int,
                   cfg: MLPConfig, *, seed: int) -> dict:
    """:func:`fit_with_check_seeds` for one seed."""
    return fit_with_check_seeds(xtr, ytr, xte, yte, n_classes, cfg, seeds=(seed,))[0]


REPORT = Reporting(
    columns=tuple(ReportColumn("1", tap, tap, "accuracy", tap, paper=tap) for tap in ("conv", "fc", "y")),
    title="Non-linear classifier probe, test accuracy (%)",
    footnote="test accuracy (%) of the non-linear probe (protocol `mlp`, metric `accuracy`: accuracy after the "
             "last epoch of its schedule, mean over seeds; converged when the same seed at half the epochs is at "
             "most `converge_gain` points lower; the paper averaged test accuracy over its last 100 epochs) on "
             "frozen features at conv (last conv layer), fc (1024 units) and y (64-d code)",
    curve=True)


def mlp_probes(inp: ProtocolInput, cfg: MLPConfig, *, seeds: tuple[int, ...], device: str = "cpu") -> list[dict]:
    """The runner's entry point: train the probes of ``seeds`` together on ``inp.train`` features
    (:func:`fit_with_check_seeds`); per seed, test accuracy in % and diagnostics (Hjelm et al. 2019,
    Table 1), each seed's the numbers it gets alone (:func:`mlp_probe`)."""
    dev = torch.device(device)
    xtr, ytr = inp.train.features.to(dev), inp.train.labels.to(dev)
    return fit_with_check_seeds(xtr, ytr, inp.test.features.to(dev), inp.test.labels.to(dev), inp.n_classes, cfg,
                                seeds=seeds)


@register_protocol("mlp", MLPConfig, order=10, taps="all", seeds=3, display="Non-linear classifier", every_epoch=True,
                   report=REPORT, version=5, batch=mlp_probes)
def mlp_probe(inp: ProtocolInput, cfg: MLPConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Train the probe on ``inp.train`` features, return test accuracy in % and diagnostics
    (Hjelm et al. 2019, Table 1): :func:`mlp_probes` with one seed."""
    return mlp_probes(inp, cfg, seeds=(seed,), device=device)[0]
