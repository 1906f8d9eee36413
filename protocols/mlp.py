"""Non-linear classifier probe on frozen features (Table 1; DIM_SPEC.md protocol 1).

flatten -> Linear(200) -> Dropout(0.1) -> BN1d -> ReLU -> Linear(n_classes), cross-entropy,
Adam 1e-4 with betas (0.5, 0.999), MultiStepLR x0.1 at the milestones, batch 64. The paper selects
by averaging test accuracy over the last 100 epochs; we report the final test accuracy
(``accuracy``) and that average over the last ``average_last`` epochs (``accuracy_avg_last``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repeval.protocol import ProtocolFailure, ProtocolInput, ReportColumn, Reporting, register_protocol
from repeval.seeding import derive_seed, generator


@dataclass(frozen=True)
class MLPConfig:
    epochs: int = 200
    hidden: int = 200
    dropout: float = 0.1
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 64
    milestones: tuple[int, ...] = (50, 100)
    gamma: float = 0.1
    average_last: int = 10


def probe_head(d_in: int, n_classes: int, hidden: int = 200, dropout: float = 0.1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Dropout(dropout), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, n_classes))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    model.eval()
    correct = 0
    for s in range(0, x.shape[0], batch_size):
        correct += int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
    return 100.0 * correct / max(1, x.shape[0])


REPORT = Reporting(
    columns=tuple(ReportColumn("1", tap, tap, "accuracy", tap, paper=tap) for tap in ("conv", "fc", "y")),
    title="Non-linear classifier probe, test accuracy (%)",
    footnote="test accuracy (%) of the non-linear probe (protocol `mlp`, metric `accuracy`: accuracy after the "
             "last epoch; the paper averaged test accuracy over the last 100 epochs) on frozen features at conv "
             "(last conv layer), fc (1024 units) and y (64-d code)",
    curve=True)


@register_protocol("mlp", MLPConfig, taps="all", display="Non-linear classifier", every_epoch=True,
                   report=REPORT)
def mlp_probe(inp: ProtocolInput, cfg: MLPConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Train the probe on ``inp.train`` features, return test accuracy in % (Table 1)."""
    dev = torch.device(device)
    xtr, ytr = inp.train.features.to(dev), inp.train.labels.to(dev)
    xte, yte = inp.test.features.to(dev), inp.test.labels.to(dev)
    torch.manual_seed(derive_seed(seed, "mlp-init"))
    model = probe_head(xtr.shape[1], inp.n_classes, cfg.hidden, cfg.dropout).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma)
    n, bs = xtr.shape[0], min(cfg.batch_size, xtr.shape[0])
    accs: list[float] = []
    loss = torch.zeros(())
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=generator(derive_seed(seed, "mlp-shuffle", epoch))).to(dev)
        for s in range(0, n - bs + 1, bs):
            idx = perm[s:s + bs]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not torch.isfinite(loss):
            raise ProtocolFailure(f"mlp probe loss became {float(loss)} at epoch {epoch + 1}")
        sched.step()
        if epoch >= cfg.epochs - cfg.average_last:
            accs.append(accuracy(model, xte, yte))
    final = accs[-1] if accs else accuracy(model, xte, yte)
    return {"accuracy": final, "accuracy_avg_last": sum(accs) / len(accs) if accs else final,
            "train_accuracy": accuracy(model, xtr, ytr), "final_loss": float(loss.detach())}
