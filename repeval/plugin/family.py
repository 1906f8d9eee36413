"""The base class of an encoder family trained by repeval's one loop (:func:`repeval.engine.train.train`)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrainConfig
from ..estimators.nets import SharedEncoder
from ..estimators.optim import fused_adam
from ..registry import DEFAULT_ORDER


class Family(nn.Module):
    """Base class of an encoder family: ``encoder`` plus whatever heads/critics the objective needs.

    Subclasses set ``display`` (the table's row name), build their networks in ``__init__`` and
    implement :meth:`train_step`. Families with several players override :meth:`optimizers` and
    update each player inside ``train_step``.

    Identity: ``Config`` is the family's frozen settings dataclass (its fields are the constructor's
    keyword arguments; ``--set SECTION.KEY=V`` with ``SECTION = section`` overrides them), and
    ``version`` is bumped whenever the family's code changes what it computes. Both enter the
    identity of every checkpoint and record; no free-text description does.
    """

    @dataclass(frozen=True)
    class Config:
        pass

    display: str = ""
    section: str = ""     # --set section of the family's Config ("" = none)
    version: int = 1
    trains: bool = True   # False: the encoder is used as initialised or as loaded (random, pretrained)
    order: int = DEFAULT_ORDER   # position among the models (`repeval list`, default --models); built-ins 10-80
    input_size: int = SharedEncoder.input_size   # image side the encoder takes (imagefolder data is resized to it)

    def __init__(self, cfg: TrainConfig, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        self.n_classes = n_classes
        self.encoder: nn.Module = SharedEncoder(in_channels)

    # -- declared by subclasses ------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.adam(self.parameters())}

    def prepare(self, n_train: int) -> None:
        """Called once before training (and before a resume loads the checkpoint) with the number
        of training images; families with per-image state (NAT's targets) allocate it here."""

    def train_step(self, x: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                   opt: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        """One update on batch ``x`` (``index``: the images' positions in the training set);
        returns named scalar losses."""
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------------
    def adam(self, params) -> torch.optim.Adam:
        """Adam(lr, betas) from ``cfg`` (:func:`fused_adam`)."""
        return fused_adam(params, self.cfg.lr, (self.cfg.beta1, self.cfg.beta2))

    def amp(self, x: torch.Tensor):
        """bf16 autocast when ``precision == 'bf16'``; a no-op in fp32."""
        if self.cfg.precision == "bf16":
            return torch.autocast(x.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @staticmethod
    def update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
