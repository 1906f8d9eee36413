"""Fully supervised upper reference (Hjelm et al. 2019, Sec. 4, baselines, Table 1's first row).

The shared encoder trained end to end with cross-entropy through the probe head of
protocols/mlp.py (Linear(200) -> Dropout(0.1) -> BN1d -> ReLU -> Linear(n_classes)) on the ``fc``
tap, as the paper reports the supervised number at fc. The head is discarded after training; the
protocols then see this encoder like any other.
"""
from __future__ import annotations

import torch.nn.functional as F

from repeval.estimators.nets import probe_head
from repeval.plugin.family import Family
from repeval.plugin.zoo import register_model

HIDDEN, DROPOUT = 200, 0.1


@register_model("supervised", "Fully supervised")
class Supervised(Family):
    order = 70   # position in `repeval list` and the default --models
    section = "supervised"

    def __init__(self, cfg, n_classes=10, in_channels=3):
        super().__init__(cfg, n_classes, in_channels)
        self.head = probe_head(self.encoder.out.in_features, n_classes, HIDDEN, DROPOUT)

    def train_step(self, x, labels, index, opt):
        with self.amp(x):
            logits = self.head(self.encoder(x)["fc"])
        loss = F.cross_entropy(logits.float(), labels)
        self.update(opt["model"], loss)
        return {"ce": loss.detach()}
