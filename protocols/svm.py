"""Linear SVM with hinge loss on frozen features (Table 4; Hjelm et al. 2019, Sec. 4).

The paper trains "five SVMs with hinge loss" per model and tap and reports the mean and std of test
accuracy; C and feature scaling were never released. repeval's choices:

- Features standardised with the training split's statistics (constant columns left at 0).
- Multiclass hinge (``loss="hinge"``): Crammer-Singer (default; max_k [1{k != y} + s_k] - s_y) or
  one-vs-rest, scores s = W x + b, bias unregularised; ``loss="squared_hinge"`` squares each term.
- Primal P = mean_i hinge_i + |W|^2 / (2 C n), minimised by minibatch Adam from W = 0 in cycles
  (cosine decay from ``lr`` to 0 over ``epochs`` epochs, at least ``min_steps`` steps); it stops
  when P moved by at most ``tol`` (relative) over a cycle, else after ``max_cycles`` (``converged``).
- C from ``c_grid`` by accuracy on a seeded 10% validation split (ties: the smaller C), then, with
  ``refit``, retrained on the whole training split. Five seeds: each draws its validation split and
  its refit's minibatch order; the seeds' selection fits run as one solver call over a shared
  minibatch order (:func:`svm_select_and_fit_seeds`), and a seed's record does not depend on which
  seeds share the call. Measured (one process, 2 AVX2 cores, shared machine): 1.2-1.7x on digits
  taps, 1.04x on 20,000 cifar10-jpeg conv rows, where the products already dominate.
- Caveat: on features with little linear signal the multiclass hinge optimum is W = 0 for every
  practical C (scikit-learn's converged LinearSVC on random-init codes: |W| < 1e-8), so the accuracy
  only reflects how far the solver stopped from 0; ``degenerate`` flags ``weight_norm <
  degenerate_norm``. ``loss="squared_hinge"`` (the L2-SVM) has no such optimum.
- Reported besides ``accuracy``: the chosen ``c`` and its ``val_accuracy``, ``train_accuracy``,
  ``weight_norm``, ``degenerate``, the reported fit's ``converged``, ``objective``,
  ``objective_rel_change``, ``steps``, ``cycles``, the selection fit's ``select_steps`` and
  ``select_converged``, and every C's validation accuracy.

The solver (:func:`fit_linear_svm`, :func:`hinge_loss_grad`, :func:`predict`) is pure tensor math
and runs on CUDA unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from repeval.estimators.optim import fused_adam
from repeval.plugin.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore_stats
from repeval.seeding import derive_seed, generator

MULTICLASS = ("crammer_singer", "ovr")
LOSSES = ("hinge", "squared_hinge")


@dataclass(frozen=True)
class SVMConfig:
    epochs: int = 10              # epochs per cosine cycle
    c_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    val_fraction: float = 0.1
    batch_size: int = 1024
    lr: float = 1e-3
    min_steps: int = 500          # at least this many Adam steps per cycle (small training sets get more epochs)
    multiclass: str = "crammer_singer"
    loss: str = "hinge"           # "hinge" (the paper's) or "squared_hinge" (L2-SVM, LinearSVC's default)
    refit: bool = True
    tol: float = 1e-3             # converged: two consecutive cycle ends agree to this relative objective change
    max_cycles: int = 5           # cosine cycles of `epochs` epochs at most
    degenerate_norm: float = 0.1  # |W| (standardised space) below this: the W ~ 0 regime, flagged `degenerate`

    def __post_init__(self):
        if self.multiclass not in MULTICLASS:
            raise ValueError(f"svm.multiclass must be one of {MULTICLASS}, got {self.multiclass!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"svm.loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ValueError(f"svm.c_grid must be a non-empty tuple of positive values, got {self.c_grid}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"svm.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_cycles < 1:
            raise ValueError(f"svm.epochs, svm.batch_size and svm.max_cycles must be >= 1, got {self.epochs}, "
                             f"{self.batch_size}, {self.max_cycles}")
        if self.tol <= 0:
            raise ValueError(f"svm.tol must be > 0, got {self.tol}")


# ----------------------------------------------------------------------------- pure math

def hinge_loss_grad(scores: torch.Tensor, onehot: torch.Tensor, multiclass: str,
                    squared: bool = False, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model (squared) hinge loss summed over the batch and its gradient w.r.t. the scores.

    ``scores`` (B, M, K) for M models (one per C), ``onehot`` (B, K) the labels one-hot in the
    scores' dtype. Returns (loss (M,), dS (B, M, K)). ``squared`` squares each hinge term;
    ``weight`` (B,) weights each row's term (and its gradient).
    """
    onehot = onehot[:, None, :]                                              # (B, 1, K)
    if multiclass == "crammer_singer":
        aug = scores + (1.0 - onehot)
        top, j = aug.max(dim=2)                                              # (B, M)
        loss = top - (scores * onehot).sum(2)                                # >= 0 (aug_y = s_y)
        grad = torch.zeros_like(scores).scatter_(2, j[..., None], 1.0) - onehot
        scale = 2.0 * loss if squared else (loss > 0).to(scores.dtype)
        terms = loss * loss if squared else loss                             # (B, M)
    elif multiclass == "ovr":
        t = 2.0 * onehot - 1.0
        margin = (1.0 - t * scores).clamp_min(0)
        terms = (margin * margin if squared else margin).sum(2)
        grad, scale = (-2.0 * t * margin, None) if squared else (-t * (margin > 0).to(scores.dtype), None)
    else:
        raise ValueError(f"unknown multiclass '{multiclass}'; valid: {', '.join(MULTICLASS)}")
    if weight is not None:
        terms = terms * weight[:, None]
        scale = weight[:, None] if scale is None else scale * weight[:, None]
    return terms.sum(0), grad if scale is None else grad * scale[..., None]


def raw_space(w: torch.Tensor, b: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the standardisation into the weights: ((x - mean) / std) W^T + b = x We^T + be.

    ``w`` (R, D), ``b`` (R,) -> (We, be) of the same shapes.
    """
    if mean is None:
        return w, b
    we = w / std
    return we, b - we @ mean


def predict(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mean: torch.Tensor | None = None,
            std: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
    """Class predictions (N, M) on raw ``x`` for weights ``w`` (M, K, D), biases ``b`` (M, K) in the
    space standardised by ``mean``/``std`` (None = no standardisation)."""
    m, k, d = w.shape
    we, be = raw_space(w.reshape(m * k, d), b.reshape(-1), mean, std)
    out = [(x[i:i + chunk] @ we.T + be).view(-1, m, k).argmax(2) for i in range(0, x.shape[0], chunk)]
    return torch.cat(out)


@dataclass(frozen=True)
class SVMFit:
    """Solution of one :class:`Problem` of :func:`fit_linear_svms` for its M values of C: W (M, K, D)
    and b (M, K) in the standardised space, the primal objective (M,) at the end, its relative
    change (M,) between the last two cycle ends (the first cycle's against the start, W = 0),
    ``converged`` (M,) = change <= tol, the Adam steps and cycles run, and the objective at the
    start and after each cycle (cycles + 1, M)."""

    w: torch.Tensor
    b: torch.Tensor
    objective: torch.Tensor
    rel_change: torch.Tensor
    converged: torch.Tensor
    steps: int
    cycles: int
    history: torch.Tensor


@dataclass(frozen=True)
class Problem:
    """One SVM problem of :func:`fit_linear_svms`: its values of C and the rows of ``x`` it is posed
    on (None: all); the other rows weigh 0 in its objective and its gradients."""

    c_values: tuple[float, ...]
    rows: torch.Tensor | None = None


@torch.no_grad()
def primal_objective(xp: torch.Tensor, onehot: torch.Tensor, w: torch.Tensor, b: torch.Tensor, reg: torch.Tensor,
                     multiclass: str, squared: bool, mean: torch.Tensor | None, std: torch.Tensor | None,
                     weight: torch.Tensor | None = None, chunk: int = 8192) -> torch.Tensor:
    """sum_i weight_i hinge_i / N + |W_c|^2 / (2 c n) per model on the rows of ``xp`` (N, D) (weight
    None: all 1, the mean hinge); ``w`` (M*K, D), ``b`` (M*K,), ``reg`` (M*K, 1) = 1 / (c n) per
    score row. Returns (M,)."""
    m = reg.shape[0] // onehot.shape[1]
    we, be = raw_space(w, b, mean, std)
    total = torch.zeros(m, dtype=torch.float64, device=xp.device)
    for i in range(0, xp.shape[0], chunk):
        scores = torch.addmm(be, xp[i:i + chunk], we.T).view(-1, m, onehot.shape[1])
        wi = None if weight is None else weight[i:i + chunk]
        total += hinge_loss_grad(scores, onehot[i:i + chunk], multiclass, squared, wi)[0].double()
    penalty = (0.5 * reg[:, 0] * (w * w).sum(1)).view(m, -1).sum(1).double()
    return total / xp.shape[0] + penalty


def fit_linear_svms(x: torch.Tensor, y: torch.Tensor, n_classes: int, problems: list[Problem], *,
                    epochs: int, batch_size: int = 1024, lr: float = 1e-3, min_steps: int = 0,
                    multiclass: str = "crammer_singer", loss: str = "hinge", seed: int = 0,
                    mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                    tol: float = 1e-3, max_cycles: int = 1) -> list[SVMFit]:
    """Minimise P_c = mean_{i in rows} hinge_i + |W_c|^2 / (2 c n_rows) for every problem and every c
    of it, all at once (hinge_i squared when ``loss="squared_hinge"``), until each problem has
    converged to ``tol``.

    ``x`` (N, D) raw features on the target device. All N rows are gathered once in a seeded random
    order (``seed``) and cut into fixed contiguous minibatches whose order is reshuffled every
    epoch (no per-step copy); every problem sees the same minibatches, its rows weighted N / n_rows
    and the others 0, so the minibatch gradient is unbiased for its own objective, and the scores of
    every model of every live problem come from one product per step (B, D) x (D, sum M*K). With
    ``mean``/``std`` the problems are posed on standardised features, computed implicitly: scores
    use the folded weights of :func:`raw_space` and the weight gradient is (G^T X - (1^T G)^T
    mean^T) / std (G^T X, never X^T G: measured faster). Minibatch Adam from W = 0 in cycles: each
    cycle decays the learning rate from ``lr`` to 0 along a cosine over max(epochs, ceil(min_steps
    / batches)) whole epochs; after each cycle the full primal objective of each live problem is
    evaluated, and a problem stops (its weights and its Adam state no longer change) when
    |P_prev - P| / P_prev <= ``tol`` for each of its c, P_prev being the previous cycle's end (the
    start, W = 0, for the first): one more cycle, restarted at ``lr``, no longer moves its
    objective (converged). Otherwise it stops after ``max_cycles`` cycles (not converged). A
    problem's result does not depend on the other problems of the call (up to the floating-point
    order of the shared products). Raises ProtocolFailure on non-finite values.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss '{loss}'; valid: {', '.join(LOSSES)}")
    squared = loss == "squared_hinge"
    dev, dt = x.device, torch.float32
    g = generator(seed)
    order = torch.randperm(x.shape[0], generator=g).to(dev)
    xp, yp = x[order], y[order]
    n, d = xp.shape
    k = n_classes
    weights, regs, ws, bs_, sizes = [], [], [], [], []
    for prob in problems:
        if prob.rows is None:
            weights.append(None)
            n_p = n
        else:
            member = torch.zeros(x.shape[0], device=dev, dtype=dt)
            member[prob.rows.to(dev)] = 1.0
            n_p = int(member.sum())
            weights.append(member[order] * (n / max(1, n_p)))
        regs.append(torch.tensor([1.0 / (c * n_p) for c in prob.c_values], device=dev, dtype=dt)
                    .repeat_interleave(k)[:, None])
        ws.append(torch.zeros(len(prob.c_values) * k, d, device=dev, dtype=dt))
        bs_.append(torch.zeros(len(prob.c_values) * k, device=dev, dtype=dt))
        sizes.append(len(prob.c_values) * k)
    opt = fused_adam([t for pair in zip(ws, bs_) for t in pair], lr)
    bs = min(batch_size, n)
    starts = list(range(0, n, bs))
    epochs = max(epochs, math.ceil(min_steps / len(starts)))
    total = epochs * len(starts)
    onehot = torch.nn.functional.one_hot(yp, k).to(dt)

    def objective(p: int) -> torch.Tensor:
        return primal_objective(xp, onehot, ws[p], bs_[p], regs[p], multiclass, squared, mean, std, weights[p])

    objectives = [objective(p) for p in range(len(problems))]     # at W = 0, b = 0
    histories = [[o] for o in objectives]
    rels = [torch.zeros_like(o) for o in objectives]
    cycles = [0] * len(problems)
    live = list(range(len(problems)))
    for cycle in range(1, max_cycles + 1):
        for p in range(len(problems)):       # a stopped problem has no gradient: Adam leaves it alone
            ws[p].grad = bs_[p].grad = None
        offsets = [0]
        for p in live:
            offsets.append(offsets[-1] + sizes[p])
        gw = torch.empty(offsets[-1], d, device=dev, dtype=dt)
        gb = torch.empty(offsets[-1], device=dev, dtype=dt)
        for j, p in enumerate(live):
            ws[p].grad, bs_[p].grad = gw[offsets[j]:offsets[j + 1]], gb[offsets[j]:offsets[j + 1]]
        for epoch in range(epochs):
            for step, j in enumerate(torch.randperm(len(starts), generator=g).tolist(), epoch * len(starts)):
                s = starts[j]
                xb = xp[s:s + bs]
                folded = [raw_space(ws[p], bs_[p], mean, std) for p in live]
                we = folded[0][0] if len(live) == 1 else torch.cat([f[0] for f in folded])
                be = folded[0][1] if len(live) == 1 else torch.cat([f[1] for f in folded])
                scores = torch.addmm(be, xb, we.T)                       # (B, sum M*K)
                gs = torch.empty_like(scores)
                for i, p in enumerate(live):
                    wb = None if weights[p] is None else weights[p][s:s + bs]
                    sp = scores[:, offsets[i]:offsets[i + 1]].view(xb.shape[0], -1, k)
                    batch_loss, gp = hinge_loss_grad(sp, onehot[s:s + bs], multiclass, squared, wb)
                    gs[:, offsets[i]:offsets[i + 1]] = gp.reshape(xb.shape[0], -1)
                gs.div_(xb.shape[0])
                torch.mm(gs.T, xb, out=gw)                               # G^T X: (sum M*K, D)
                torch.sum(gs, 0, out=gb)
                if mean is not None:
                    gw.addr_(gb, mean, alpha=-1.0).div_(std)
                for p in live:
                    ws[p].grad.addcmul_(ws[p], regs[p])
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
                opt.step()
            if not (all(torch.isfinite(ws[p]).all() for p in live) and torch.isfinite(batch_loss).all()):
                raise ProtocolFailure(f"svm solver diverged (non-finite weights or loss) in cycle {cycle}, "
                                      f"epoch {epoch + 1}")
        for p in live:
            prev, objectives[p] = objectives[p], objective(p)
            histories[p].append(objectives[p])
            rels[p] = (prev - objectives[p]).abs() / prev.clamp_min(1e-12)
            cycles[p] = cycle
        live = [p for p in live if not bool((rels[p] <= tol).all())]
        if not live:
            break
    return [SVMFit(ws[p].detach().view(-1, k, d), bs_[p].detach().view(-1, k), objectives[p], rels[p],
                   rels[p] <= tol, cycles[p] * total, cycles[p], torch.stack(histories[p]))
            for p in range(len(problems))]


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, n_classes: int, c_values: tuple[float, ...] | list[float], *,
                   rows: torch.Tensor | None = None, **options) -> SVMFit:
    """One problem of :func:`fit_linear_svms`: every c in ``c_values`` on the rows ``rows`` of ``x``
    (default all)."""
    return fit_linear_svms(x, y, n_classes, [Problem(tuple(c_values), rows)], **options)[0]


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy in % per model for predictions (N, M)."""
    return 100.0 * (pred == y[:, None]).float().mean(0)


# ----------------------------------------------------------------------------- protocol

ORDER_SEED = derive_seed(0, "svm-select-order")
"""The minibatch order of the selection fits, the same for every seed (:func:`svm_select_and_fit_seeds`)."""


def svm_select_and_fit_seeds(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                             n_classes: int, cfg: SVMConfig, *, seeds: tuple[int, ...]) -> list[dict[str, float]]:
    """For each seed: choose C on the seed's validation split carved from train, refit, report test
    accuracy and the solver's diagnostics (tensors on one device; see the module docstring).

    The seeds' selection fits are one call of :func:`fit_linear_svms` (one problem per seed, its
    own validation rows weighted 0), over minibatches in the fixed order :data:`ORDER_SEED`: the
    objective is strictly convex, so its minimiser does not depend on the order, and a shared order
    lets one product per step serve every seed's every C. Each refit has the seed's own order, so
    the seeds also sample the solver's stopping error, as separate SVMs would."""
    mean, std = zscore_stats(x_tr)
    n = x_tr.shape[0]
    n_val = max(1, int(round(cfg.val_fraction * n)))
    grid = tuple(sorted(cfg.c_grid))
    opts = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, min_steps=cfg.min_steps,
                multiclass=cfg.multiclass, loss=cfg.loss, mean=mean, std=std, tol=cfg.tol,
                max_cycles=cfg.max_cycles)
    perms = [torch.randperm(n, generator=generator(derive_seed(seed, "svm-val"))).to(x_tr.device) for seed in seeds]
    sels = fit_linear_svms(x_tr, y_tr, n_classes, [Problem(grid, perm[n_val:]) for perm in perms],
                           seed=ORDER_SEED, **opts)
    out = []
    for seed, perm, sel in zip(seeds, perms, sels):
        val = perm[:n_val]
        val_acc = accuracy(predict(x_tr[val], sel.w, sel.b, mean, std), y_tr[val])
        best = int(torch.argmax(val_acc))                      # first maximum = smallest C among ties
        if cfg.refit:
            res, i = fit_linear_svm(x_tr, y_tr, n_classes, (grid[best],), seed=derive_seed(seed, "svm-refit"),
                                    **opts), 0
        else:
            res, i = sel, best
        w, b = res.w[i:i + 1], res.b[i:i + 1]
        test_acc = float(accuracy(predict(x_te, w, b, mean, std), y_te)[0])
        train_acc = float(accuracy(predict(x_tr, w, b, mean, std), y_tr)[0])
        norm = float(w.norm())
        rec = {"accuracy": test_acc, "c": grid[best], "val_accuracy": float(val_acc[best]),
               "train_accuracy": train_acc, "weight_norm": norm, "degenerate": norm < cfg.degenerate_norm,
               "converged": bool(res.converged[i]), "objective": float(res.objective[i]),
               "objective_rel_change": float(res.rel_change[i]), "steps": res.steps, "cycles": res.cycles,
               "select_converged": bool(sel.converged.all()), "select_steps": sel.steps}
        rec.update({f"val_accuracy_c{c:g}": float(a) for c, a in zip(grid, val_acc)})
        out.append(rec)
    return out


def svm_select_and_fit(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                       n_classes: int, cfg: SVMConfig, *, seed: int) -> dict[str, float]:
    """:func:`svm_select_and_fit_seeds` for one seed."""
    return svm_select_and_fit_seeds(x_tr, y_tr, x_te, y_te, n_classes, cfg, seeds=(seed,))[0]


REPORT = Reporting(
    columns=tuple(ReportColumn("4", f"svm_{t}", f"SVM {t}", "accuracy", t, paper=f"svm_{t}_mean",
                               paper_std=f"svm_{t}_std") for t in ("conv", "fc", "y")),
    title="Linear SVM accuracy (%)",
    footnote="SVM = linear SVM test accuracy (%) (protocol `svm`, metric `accuracy`)")


def svm_seeds(inp: ProtocolInput, cfg: SVMConfig, *, seeds: tuple[int, ...], device: str = "cpu") -> list[dict]:
    """:func:`svm_protocol` for several seeds in one call (their selection fits share each product)."""
    dev = torch.device(device)
    return svm_select_and_fit_seeds(inp.train.features.to(dev), inp.train.labels.to(dev), inp.test.features.to(dev),
                                    inp.test.labels.to(dev), inp.n_classes, cfg, seeds=tuple(seeds))


@register_protocol("svm", SVMConfig, order=20, taps="all", seeds=5, display="Linear SVM", report=REPORT, version=3,
                   batch=svm_seeds)
def svm_protocol(inp: ProtocolInput, cfg: SVMConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Linear hinge-loss SVM on one tap; C by validation accuracy; test accuracy in % (Table 4)."""
    return svm_seeds(inp, cfg, seeds=(seed,), device=device)[0]
