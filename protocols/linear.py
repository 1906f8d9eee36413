"""Linear probe: multinomial logistic regression on standardised frozen features (extra protocol,
Table X).

The field's standard linear evaluation (e.g. Kolesnikov et al., CVPR 2019; Chen et al., SimCLR,
ICML 2020, Appendix B.6, which also fits it with L-BFGS on frozen features), done here as:

- features standardised per dimension with the training split's mean and std
  (:func:`repeval.estimators.zscore.zscore`);
- objective per weight decay lambda: mean_i CE(W x_i + b, y_i) + lambda / 2 |W|^2 (bias unpenalised),
  minimised full batch by L-BFGS (strong-Wolfe line search) from an analytic gradient computed in
  one pass over the features (:func:`loss_grad`), with W stored as (classes, D) so that its
  gradient is G^T X (faster than X^T G); the lambdas of the grid are fitted from the largest to the
  smallest, each warm-started from the previous solution (a regularisation path);
- lambda chosen by accuracy on a validation split carved from the training split (``val_fraction``,
  seeded by the protocol seed; ties go to the larger lambda); the path stops early once
  ``path_patience`` lambdas in a row are no better than the best (validation accuracy is unimodal
  in lambda up to noise, and the small lambdas left out are the slowest fits); with ``refit`` the
  chosen lambda is refitted on the whole training split, warm-started, and evaluated on the test split;
- tolerance 1e-4 on max |gradient| of the mean loss (scikit-learn's LogisticRegression default): on
  cifar10-jpeg random-init features float32 gradients stall near 3e-5 - 8e-5, so 1e-5 is reached
  only by the no-progress rule, at twice the iterations and the same test accuracy (+-0.05);
- ``converged``: for the reported fit, L-BFGS stopped by its own tolerances (max |gradient| <=
  ``tolerance``, or no progress at float32 precision) before ``max_iter`` iterations (or 4 x
  ``max_iter`` function evaluations).

The validation split is a 0/1 weight per training row (no copy of the features). Reported:
``accuracy`` (test, %), ``weight_decay``, ``val_accuracy``, ``train_accuracy``, ``iterations``,
``evaluations`` (of the loss and gradient), ``grad_max``, ``converged``, ``path_fits`` (lambdas fitted) and the validation accuracy of each.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repeval.config import ConfigError
from repeval.plugin.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol, zscore
from repeval.seeding import derive_seed, generator


@dataclass(frozen=True)
class LinearConfig:
    weight_decays: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    val_fraction: float = 0.1
    max_iter: int = 200           # L-BFGS iterations per fit (cap)
    tolerance: float = 1e-4       # max |gradient| at which L-BFGS stops (scikit-learn's LogisticRegression tol)
    history_size: int = 20
    refit: bool = True
    path_patience: int = 1        # the path stops after this many decays in a row below the best (0: fit all)

    def __post_init__(self):   # checked when the config resolves, before any work
        if (not self.weight_decays or min(self.weight_decays) < 0 or not 0 < self.val_fraction < 1 or self.max_iter < 1
                or self.path_patience < 0):
            raise ConfigError(f"linear: weight_decays >= 0 (at least one), 0 < val_fraction < 1, max_iter >= 1, "
                              f"path_patience >= 0; "
                              f"got {self}")


def loss_grad(x: torch.Tensor, y: torch.Tensor, w_row: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
              weight_decay: float, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted multinomial cross-entropy + weight_decay / 2 |W|^2, and its gradient.

    x (N, D), y (N,) int64, w_row (N,) row weights summing to 1 (0 = row left out), W (C, D), b (C,)
    -> (loss (), dW (C, D), db (C,)). One pass over ``x`` in chunks of ``chunk`` rows, each giving
    its logits and its share G^T X of the weight gradient (no temporaries larger than a chunk;
    measured as fast as two whole-matrix products on cifar10-jpeg conv features, 2 AVX2 cores)."""
    dW = weight_decay * W
    db = torch.zeros_like(b)
    loss = 0.5 * weight_decay * W.pow(2).sum()
    for s in range(0, x.shape[0], chunk):
        xc, yc, wc = x[s:s + chunk], y[s:s + chunk], w_row[s:s + chunk]
        logp = torch.log_softmax(torch.addmm(b, xc, W.T), dim=1)              # (n, C)
        loss = loss - (wc * logp.gather(1, yc[:, None]).squeeze(1)).sum()
        g = logp.exp_()                                                     # softmax, in place
        g[torch.arange(len(yc), device=yc.device), yc] -= 1.0
        g.mul_(wc[:, None])
        dW.addmm_(g.T, xc)
        db += g.sum(0)
    return loss, dW, db


def fit(x: torch.Tensor, y: torch.Tensor, w_row: torch.Tensor, W: torch.Tensor, b: torch.Tensor,
        weight_decay: float, cfg: LinearConfig) -> tuple[int, int, float, bool]:
    """Minimise :func:`loss_grad` over (W, b) in place by L-BFGS.

    Returns (iterations, evaluations of :func:`loss_grad`, max |gradient| at the end, converged:
    stopped by a tolerance, not by the iteration or evaluation cap)."""
    max_eval = 4 * cfg.max_iter
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=cfg.max_iter, max_eval=max_eval, tolerance_grad=cfg.tolerance,
                            tolerance_change=1e-10, history_size=cfg.history_size, line_search_fn="strong_wolfe")

    def closure():
        with torch.no_grad():
            loss, W.grad, b.grad = loss_grad(x, y, w_row, W, b, weight_decay)
        if not torch.isfinite(loss):
            raise ProtocolFailure(f"linear probe loss became {float(loss)} (weight decay {weight_decay:g})")
        return loss

    opt.step(closure)
    closure()
    state = opt.state[W]
    iters, evals = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    gmax = float(torch.cat([W.grad.abs().flatten(), b.grad.abs()]).max())
    return iters, evals + 1, gmax, gmax <= cfg.tolerance or (iters < cfg.max_iter and evals < max_eval)


@torch.no_grad()
def _accuracy(x: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether each row is classified correctly."""
    return torch.addmm(b, x, W.T).argmax(1) == y


REPORT = Reporting(
    columns=tuple(ReportColumn("X", f"linear_{tap}", f"linear {tap}", "accuracy", tap) for tap in ("conv", "fc", "y")),
    title="linear probe accuracy (%)",
    footnote="linear = test accuracy (%) of multinomial logistic regression on standardised features, L-BFGS, "
             "weight decay chosen on a validation split of the training set (protocol `linear`, metric `accuracy`)",
    curve=True)


@register_protocol("linear", LinearConfig, order=70, taps="all", display="Linear probe", report=REPORT,
                   version=2)
def linear_protocol(inp: ProtocolInput, cfg: LinearConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Fit the linear probe on ``inp.train`` features; test accuracy in % (see the module docstring)."""
    dev = torch.device(device)
    xtr, xte = zscore(inp.train.features.to(dev, torch.float32), inp.test.features.to(dev, torch.float32))
    ytr, yte = inp.train.labels.to(dev), inp.test.labels.to(dev)
    n, d, c = xtr.shape[0], xtr.shape[1], inp.n_classes
    n_val = max(1, int(round(cfg.val_fraction * n)))
    if n - n_val < 1:
        raise ProtocolFailure(f"linear probe: {n} training rows leave none to fit after the validation split")
    perm = torch.randperm(n, generator=generator(derive_seed(seed, "linear-val"))).to(dev)
    is_val = torch.zeros(n, dtype=torch.bool, device=dev)
    is_val[perm[:n_val]] = True
    w_fit = (~is_val).float() / (n - n_val)

    W = torch.zeros(c, d, device=dev)
    b = torch.zeros(c, device=dev)
    out: dict[str, float] = {}
    states, best = {}, None
    iterations = evaluations = 0
    worse = 0
    for wd in sorted(set(cfg.weight_decays), reverse=True):           # regularisation path, warm starts
        it, ev, gmax, conv = fit(xtr, ytr, w_fit, W, b, wd, cfg)
        iterations, evaluations = iterations + it, evaluations + ev
        acc = 100.0 * float(_accuracy(xtr, ytr, W, b)[is_val].float().mean())
        out[f"val_accuracy_wd{wd:g}"] = acc
        states[wd] = (W.clone(), b.clone(), gmax, conv)
        if best is None or acc > out[f"val_accuracy_wd{best:g}"]:      # ties keep the larger decay
            best, worse = wd, 0
        else:
            worse += 1
            if cfg.path_patience and worse >= cfg.path_patience:      # smaller decays cost the most iterations
                break
    W, b, gmax, conv = states[best]
    if cfg.refit:
        it, ev, gmax, conv = fit(xtr, ytr, torch.full((n,), 1.0 / n, device=dev), W, b, best, cfg)
        iterations, evaluations = iterations + it, evaluations + ev
    return {"accuracy": 100.0 * float(_accuracy(xte, yte, W, b).float().mean()) if len(yte) else float("nan"),
            "weight_decay": best, "val_accuracy": out[f"val_accuracy_wd{best:g}"],
            "train_accuracy": 100.0 * float(_accuracy(xtr, ytr, W, b).float().mean()),
            "iterations": iterations, "evaluations": evaluations, "grad_max": gmax, "converged": conv,
            "path_fits": sum(k.startswith("val_accuracy_wd") for k in out), **out}
