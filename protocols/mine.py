"""MINE estimate of I(X; y) between images and their code (Hjelm et al. 2019, Sec. 4; Table 4), and a
plain MI estimator between two arrays.

The authors never released this code; repeval's choices (Belghazi et al. 2018, "MINE"; the math is in
:mod:`repeval.estimators.mi`):

- Statistics network T(x, y) (:class:`repeval.estimators.mi.StatisticsNetwork`): an x-branch (a conv net for
  images: convs 4x4/2/1 with ``conv_channels`` and LeakyReLU(0.2), then Linear to ``x_features`` and
  ELU; for vectors an MLP d -> hidden -> x_features with ELU), concatenated with y (for two vectors:
  and with y's features from a branch of the same shape), then ``layers`` dense layers of ``hidden``
  units (ELU) and a scalar output.
- Objective (``estimator``): ``dv`` (default) the Donsker-Varadhan bound E_P[T] - log E_Q[e^T]
  (MINE Eq. 10) trained with MINE's moving-average gradient correction (Sec. 3.2, rate
  ``ema_rate``); ``nwj`` or ``infonce`` (see :func:`estimate_mi`). Joint samples are (x_i, y_i);
  marginal samples pair the batch's x with the y of an independently drawn batch.
- Per-dimension map ``transform`` (default ``copula``: normal scores of the training split's
  empirical CDF, :func:`repeval.estimators.mi.copula_apply`) on y, and on x when x is a vector. I(X; Y) is
  unchanged by an invertible map of each dimension; heavy tails and odd marginals no longer reach
  the critic. Images are used as given, in [-1, 1]; the protocol maps the code y the same way.
- Budget (:func:`repeval.estimators.mi.fit_with_stop_rule`): ``val_fraction`` of the training pairs
  (at most ``max_val``) is held back; Adam for a fixed ``steps`` with the learning rate decaying from
  ``lr`` to ``lr_final`` along a half cosine (``schedule="cosine"``, default: the paper trains MINE
  "with a decaying learning rate", and a fixed budget gives every encoder the same critic, which a
  relative score needs); every ``eval_every`` steps the bound is evaluated on the validation split
  and the best state is kept. ``converged`` = 1 when the validation curve has levelled off: the mean
  of its last quarter is at most max(``min_delta``, 2 standard errors) above the quarter before
  (``late_gain``, nats; :func:`repeval.estimators.mi.late_gain`; with fewer than two evaluations in
  either quarter the test cannot tell: ``converged`` = 0 and no ``late_gain``). A single noisy evaluation neither
  stops the run nor calls it converged (version 3 stopped by ``patience`` at a constant rate, and on
  CIFAR-10 codes that stopped at the first dip of a curve that was still rising).
  ``schedule="constant"`` keeps that early stopping (``patience`` evaluations without a gain of
  ``min_delta``, not before ``min_steps``; ``lr_final`` > 0 turns a plateau into a tenfold rate drop
  first), which the array API below uses.
- Reported: ``mi_bound`` the bound on *held-out* pairs (the test split, ``eval_shuffles`` shuffles of
  y as marginal samples) with its delta-method standard error ``mi_stderr``; ``mi`` =
  max(0, ``mi_bound``) (MI is never negative: a negative held-out bound means no detectable
  dependence, and is flagged by ``negative_bound`` = 1 rather than read as MI); ``mi_train`` the same
  evaluation on as many training pairs (a large gap = overfitting); ``steps_used``, ``converged``,
  ``val_best`` (best validation bound), ``late_gain``, ``diverged`` (the validation bound collapsed
  after its best).
  A non-finite loss raises :class:`ProtocolFailure`.

MINE's estimates on images are critic-dependent, relative scores (Hjelm et al. 2019), not absolute MI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from repeval.config import make_config
from repeval.estimators.mi import ESTIMATORS, SCHEDULES, TRANSFORMS, as_tensor, cpu_threads, mine_fit_evaluate
from repeval.plugin.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol
from repeval.seeding import derive_seed, generator


@dataclass(frozen=True)
class MINEConfig:
    estimator: str = "dv"         # "dv" (MINE), "infonce", "nwj"
    transform: str = "copula"     # per-dimension map before the critic: "copula", "zscore", "none"
    steps: int = 2000             # the budget (cosine) or the cap (constant)
    schedule: str = "cosine"      # "cosine": fixed budget, lr -> lr_final; "constant": early stopping
    min_steps: int = 500          # constant schedule: no stop by patience before this
    batch_size: int = 256
    lr: float = 1e-3
    lr_final: float = 1e-5        # cosine: the last step's rate; constant: > 0 and < lr turns plateaus into lr / 10
    beta1: float = 0.9
    beta2: float = 0.999
    ema_rate: float = 0.01        # MINE Sec. 3.2 moving average of E_Q[e^T]
    hidden: int = 128
    layers: int = 2               # dense layers after the concatenation
    x_features: int = 64          # width of the x branch output
    conv_channels: tuple[int, ...] = (64, 128, 256)   # image branch: one conv 4x4/2/1 per entry
    eval_shuffles: int = 8        # marginal samples per held-out joint sample
    eval_every: int = 50          # steps between validation evaluations
    patience: int = 4             # constant schedule: evaluations without a gain before stopping
    min_delta: float = 0.02       # nats: a smaller gain is no gain (patience; cosine: the plateau test)
    val_fraction: float = 0.2     # share of the training pairs held back for the stop rule
    max_val: int = 2000           # validation pairs at most
    max_eval: int = 10000         # held-out pairs used for the estimate (0 = all)
    max_train: int = 0            # training pairs used (0 = all)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"mine needs steps >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")
        if not 0.0 < self.ema_rate <= 1.0:
            raise ValueError(f"mine.ema_rate must be in (0, 1], got {self.ema_rate}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"mine.estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"mine.transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"mine.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "cosine" and not 0.0 <= self.lr_final < self.lr:
            raise ValueError(f"the cosine schedule needs 0 <= mine.lr_final < mine.lr, got lr_final={self.lr_final}, "
                             f"lr={self.lr}")
        if not 0.0 < self.val_fraction < 1.0 or self.eval_every < 1 or self.patience < 1:
            raise ValueError(f"mine needs 0 < val_fraction < 1, eval_every >= 1, patience >= 1, got "
                             f"{self.val_fraction}, {self.eval_every}, {self.patience}")


def reported(r: dict[str, float]) -> dict[str, float]:
    """Record metrics from a :func:`repeval.estimators.mi.mine_fit_evaluate` result (module docstring)."""
    return {"mi": max(0.0, r["bound"]), "mi_bound": r["bound"], "mi_stderr": r["stderr"],
            "negative_bound": float(r["bound"] < 0), "mi_train": r["bound_train"], "val_best": r["val_best"],
            "steps_used": r["steps_used"], "converged": r["converged"], "diverged": r["diverged"]}


# ----------------------------------------------------------------------------- array API

ARRAY_DEFAULTS = {"hidden": 64, "lr": 5e-3, "batch_size": 512, "patience": 6, "eval_shuffles": 4,
                  "schedule": "constant", "steps": 4000, "lr_final": 0.0, "min_delta": 0.002}
"""Where the array API's defaults differ from :class:`MINEConfig`'s (which the image protocol keeps):
a narrower critic with a larger batch and step size, early stopping at a constant rate (a cap of
4,000 steps), more patience and fewer validation shuffles.
Chosen with ``tests/benchmarks/mi_benchmark.py`` (Czyz et al. 2023's families at 10,000 pairs): the
slowest call under 10 s on 2 CPU cores, at a mean error of 0.060 nats there (a slower setting, lr
3e-3, patience 8, 8 shuffles: 0.051 nats, slowest call 13 s)."""


def estimate_mi_details(x, y, seed: int = 0, *, folds: int = 1, test_fraction: float = 0.3, device: str = "cpu",
                        threads: int | None = 1, **options) -> dict[str, float]:
    """:func:`estimate_mi` returning every number (module docstring for their meaning).

    ``folds`` = 1 (default): one seeded split; a critic is trained (with its own validation split)
    on a ``1 - test_fraction`` share of the pairs and its bound is evaluated on the rest.
    ``folds`` >= 2: K-fold cross-fitting, a critic per fold trained on the other folds and evaluated
    on it (every pair is held out once; K times the cost). ``mi_bound``, ``mi_train``, ``val_best``
    and ``steps_used`` are means over folds, ``mi_stderr`` = sqrt(sum of squared fold errors) / folds,
    ``mi`` = max(0, ``mi_bound``), ``negative_bound`` = 1 when ``mi_bound`` < 0; ``converged`` = 1
    only when every fold stopped by patience; ``still_increasing`` = 1 - ``converged``;
    ``diverged`` is the maximum over folds. ``options`` are :class:`MINEConfig` fields over
    :data:`ARRAY_DEFAULTS`. ``threads``: intra-op CPU threads while fitting (default 1: the critic's
    small matrix products run faster on one thread than split over two, 9.4-9.8 vs 11.2 s for the
    slowest benchmark task; the numbers are the same; None keeps torch's setting).
    """
    x, y = as_tensor(x), as_tensor(y)
    if x.dim() == 1:
        x = x[:, None]
    if y.dim() == 1:
        y = y[:, None]
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"estimate_mi expects 2-D arrays of equal length, got {tuple(x.shape)} and {tuple(y.shape)}")
    if folds < 1 or not 0.0 < test_fraction < 1.0 or x.shape[0] < 8 * max(folds, 2):
        raise ValueError(f"estimate_mi needs folds >= 1, 0 < test_fraction < 1 and at least 16 pairs "
                         f"(8 per fold), got folds={folds}, test_fraction={test_fraction}, n={x.shape[0]}")
    cfg = make_config(MINEConfig, {**ARRAY_DEFAULTS, **options}, where="estimate_mi")
    perm = torch.randperm(x.shape[0], generator=generator(derive_seed(seed, "mine-folds")))
    if folds == 1:
        k = max(8, int(round(test_fraction * x.shape[0])))
        splits = [(perm[k:], perm[:k])]
    else:
        parts = torch.tensor_split(perm, folds)
        splits = [(torch.cat([p for j, p in enumerate(parts) if j != k]), parts[k]) for k in range(folds)]
    with cpu_threads(threads if torch.device(device).type == "cpu" else None):
        res = [reported(mine_fit_evaluate(x[tr], y[tr], x[te], y[te], cfg, seed=derive_seed(seed, "fold", k),
                                          device=device)) for k, (tr, te) in enumerate(splits)]
    out = {key: float(np.mean([r[key] for r in res])) for key in ("mi_bound", "mi_train", "val_best", "steps_used")}
    out["mi_stderr"] = math.sqrt(sum(r["mi_stderr"] ** 2 for r in res)) / len(res)
    out["mi"] = max(0.0, out["mi_bound"])
    out["negative_bound"] = float(out["mi_bound"] < 0)
    out["converged"] = min(r["converged"] for r in res)
    out["still_increasing"] = 1.0 - out["converged"]
    out["diverged"] = max(r["diverged"] for r in res)
    return out


def estimate_mi(x, y, seed: int = 0, **options) -> float:
    """Estimate of I(X; Y) in nats (>= 0) between the rows of 2-D arrays ``x`` (N, Dx) and ``y`` (N, Dy).

    Returns max(0, held-out bound) on a held-out share of the pairs (or cross-fitted over ``folds``);
    a negative held-out bound (no detectable dependence) reads 0 here, and
    :func:`estimate_mi_details` gives the raw bound, its standard error and the ``negative_bound``
    flag. ``options`` are :class:`MINEConfig` fields (over :data:`ARRAY_DEFAULTS`), ``folds``,
    ``test_fraction`` and ``device``. Defaults need no tuning: both variables are mapped to normal
    scores per dimension (``transform="copula"``), each goes through its own branch of the critic,
    and training stops when the validation bound stops improving. ``estimator`` picks the bound,
    each with its known bias (Poole et al. 2019):

    - ``"dv"`` (MINE, default): Donsker-Varadhan. The minibatch gradient is biased (the batch mean of
      e^T sits in a denominator; MINE's moving average reduces, not removes, that bias); the held-out
      value is a lower bound up to the log-mean-exp's finite-sample bias (it can overshoot slightly
      when the e^T are heavy-tailed) and its variance grows like e^I, so large MI is underestimated.
    - ``"infonce"``: low variance but never above log(``batch_size``) (held out: log of the block size),
      so it saturates for I near or above log(batch) and is biased low well before that.
    - ``"nwj"``: unbiased minibatch gradient and a true lower bound, but the e^(T - 1) term gives it
      high variance (larger than DV's), growing with the MI.
    """
    return estimate_mi_details(x, y, seed, **options)["mi"]


# ----------------------------------------------------------------------------- protocol

REPORT = Reporting(columns=(ReportColumn("4", "mine", "MINE", "mi", paper="mine"),), title="MINE",
                   footnote="MINE = protocol `mine`, metric `mi` (nats)")


@register_protocol("mine", MINEConfig, order=40, taps="code", needs_images=True, display="MINE I(X; y)", report=REPORT,
                   version=4)
def mine_protocol(inp: ProtocolInput, cfg: MINEConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """MINE estimate of I(X; y) in nats between test images and their codes (critic trained on train)."""
    if inp.train.images is None or inp.test.images is None:
        raise ProtocolFailure("mine needs images (needs_images=True) but the input has none")
    r = mine_fit_evaluate(inp.train.images, inp.train.features, inp.test.images, inp.test.features,
                          cfg, seed=seed, device=device)
    return {**reported(r), **({"late_gain": r["late_gain"]} if math.isfinite(r["late_gain"]) else {})}
