"""One training loop for every encoder family.

A family (:class:`repeval.plugin.family.Family`) declares its networks (as submodules, ``encoder``
among them), its optimisers and one training step; :func:`train` does the rest for all of them: seeded shuffling, batches drawn
by index from tensors already on the device, last partial batch dropped, a non-finite-loss check,
an atomic checkpoint after every epoch, and resume from the last one. Each epoch reseeds from
(seed, epoch), so a run resumed after a kill ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from ..plugin.family import Family
from ..seeding import derive_seed, generator
from ..store.storage import CheckpointError, load_sealed, save_sealed


class DivergenceError(RuntimeError):
    """A training loss became NaN or infinite."""


def _check_finite(losses: dict[str, torch.Tensor], where: str) -> dict[str, float]:
    out = {k: float(v) for k, v in losses.items()}
    for k, v in out.items():
        if not math.isfinite(v):
            raise DivergenceError(f"non-finite loss '{k}' = {v} {where}")
    return out


def train(family: Family, x: torch.Tensor, labels: torch.Tensor, ckpt_path: str | Path,
          *, until: int | None = None, name: str = "model", progress: Callable | None = None,
          keep: Callable[[int], Path | None] | None = None) -> list[dict[str, float]]:
    """Train ``family`` on images ``x`` (N, C, H, W, already on the device) up to epoch ``until``
    (default ``cfg.epochs``).

    Resumes from ``ckpt_path`` when it exists; writes it atomically, sealed with a checksum, after
    every epoch; ``keep(epoch)`` may name a path where that epoch's encoder-and-state snapshot is
    kept too (evaluation points of a learning curve). Returns the per-epoch mean losses of every
    epoch so far (those of resumed epochs restored from the checkpoint).
    """
    cfg = family.cfg
    until = cfg.epochs if until is None else until
    ckpt_path = Path(ckpt_path)
    family.prepare(x.shape[0])
    opts = family.optimizers()
    history: list[dict[str, float]] = []
    start = 0
    if ckpt_path.exists():
        state = load_sealed(ckpt_path, map_location=x.device)
        try:
            family.load_state_dict(state["family"])
            for k, o in opts.items():
                o.load_state_dict(state["optim"][k])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not fit {name}: "
                                  + " ".join(str(e).split())[:200]) from None
        start, history = int(state["epoch"]), list(state["history"])
        if start > until:
            raise CheckpointError(f"checkpoint {ckpt_path} is at epoch {start}, past the requested {until}, "
                                  f"and no snapshot of epoch {until} was kept: --rerun {name} retrains it")
    n, bs = x.shape[0], cfg.batch_size
    steps = n // bs
    if steps == 0:
        raise ValueError(f"{name}: {n} training images is fewer than one batch of {bs}")
    for epoch in range(start, until):
        family.train()
        torch.manual_seed(derive_seed(cfg.seed, "train-step", epoch))
        perm = torch.randperm(n, generator=generator(derive_seed(cfg.seed, "shuffle", epoch))).to(x.device)
        sums: dict[str, float] = {}
        for step in range(steps):
            idx = perm[step * bs:(step + 1) * bs]
            losses = _check_finite(family.train_step(x[idx], labels[idx], idx, opts),
                                   f"in {name} at epoch {epoch + 1} step {step + 1}")
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            if progress:
                progress(epoch, step, steps, losses)
        history.append({k: v / steps for k, v in sums.items()})
        state = {"family": family.state_dict(), "optim": {k: o.state_dict() for k, o in opts.items()},
                 "epoch": epoch + 1, "history": history}
        snapshot = keep(epoch + 1) if keep else None
        if snapshot is not None:   # the family's weights and the history: enough to evaluate that epoch
            save_sealed(snapshot, {"family": state["family"], "epoch": epoch + 1, "history": history})
        save_sealed(ckpt_path, state)
    family.eval()
    return history


def load_snapshot(family: Family, path: str | Path, device: torch.device | str = "cpu") -> list[dict[str, float]]:
    """Load a kept epoch snapshot (written by :func:`train`) into ``family``; returns its loss history."""
    state = load_sealed(path, map_location=device)
    try:
        family.load_state_dict(state["family"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"snapshot {path} does not fit the model: " + " ".join(str(e).split())[:200]) from None
    family.eval()
    return list(state["history"])
