"""Weighted k-nearest-neighbour classifier on frozen features (extra protocol, Table X).

The read-out of the instance-discrimination line of work (Wu et al., "Unsupervised feature learning
via non-parametric instance discrimination", CVPR 2018, Sec. 3.4; the same rule as solo-learn's and
lightly's kNN monitors): features are L2-normalised, the similarity of a test feature to a training
feature is their cosine s, the k most similar training features vote for their labels with weight
exp(s / tau), and the class with the largest summed weight is predicted (ties: the lower class
index). k = 20 and k = 200, tau = 0.07 by default.

Memory: the training features are never copied or normalised as a whole; each block of
``chunk_size`` test features is normalised and multiplied with the training matrix, and the
similarity is divided by the training norms afterwards, so the largest temporary is
``chunk_size x N`` (e.g. 512 x 50,000 floats = 100 MB for any feature width).

Deterministic: no randomness (the seed is unused). Reported: ``accuracy_k<k>`` (test, %) per k.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repeval.config import ConfigError
from repeval.plugin.protocol import ProtocolInput, ReportColumn, Reporting, register_protocol


@dataclass(frozen=True)
class KNNConfig:
    k: tuple[int, ...] = (20, 200)
    temperature: float = 0.07
    chunk_size: int = 512         # test features per similarity block

    def __post_init__(self):   # checked when the config resolves, before any work
        if not self.k or min(self.k) < 1 or self.temperature <= 0 or self.chunk_size < 1:
            raise ConfigError(f"knn: k must be positive integers, temperature > 0, chunk_size >= 1; got {self}")


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, n_classes: int,
                ks: tuple[int, ...], temperature: float, chunk_size: int = 512) -> dict[int, torch.Tensor]:
    """Weighted kNN predictions (Wu et al. 2018, Sec. 3.4) for every k of ``ks``.

    train (N, D), train_labels (N,) int64, test (M, D) -> {k: (M,) int64 predicted labels}.
    k larger than N uses all N neighbours."""
    kmax = min(max(ks), train.shape[0])
    inv_norm = train.norm(dim=1).clamp_min(1e-12).reciprocal()                   # (N,)
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for s in range(0, test.shape[0], chunk_size):
        q = torch.nn.functional.normalize(test[s:s + chunk_size].float(), dim=1)  # (c, D)
        sim = q @ train.T                             # (c, N), contiguous rows for topk
        sim.mul_(inv_norm)                            # cosine similarity
        top, idx = sim.topk(kmax, dim=1)              # sorted, most similar first
        weight = top.div_(temperature).exp_()
        votes = train_labels[idx]                     # (c, kmax)
        for k in ks:
            kk = min(k, kmax)
            scores = torch.zeros(q.shape[0], n_classes, dtype=weight.dtype, device=weight.device)
            scores.scatter_add_(1, votes[:, :kk], weight[:, :kk])
            preds[k].append(scores.argmax(1))
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for k, v in preds.items()}


REPORT = Reporting(
    columns=tuple(ReportColumn("X", f"knn{k}_{tap}", f"kNN-{k} {tap}", f"accuracy_k{k}", tap)
                  for tap in ("conv", "fc", "y") for k in (20, 200)),
    title="weighted kNN accuracy (%)",
    footnote="kNN-k = weighted k-nearest-neighbour test accuracy (%) on L2-normalised features, cosine "
             "similarity, votes weighted by exp(s / tau) (Wu et al., CVPR 2018; protocol `knn`, metrics "
             "`accuracy_k20`, `accuracy_k200`)",
    headline=("accuracy_k20", "accuracy_k200"),
    curve=True)


@register_protocol("knn", KNNConfig, order=60, taps="all", display="Weighted kNN", every_epoch=True, report=REPORT)
def knn_protocol(inp: ProtocolInput, cfg: KNNConfig, *, seed: int = 0, device: str = "cpu") -> dict:
    """Weighted kNN of ``inp.test`` features among ``inp.train`` features; accuracy in % per k."""
    dev = torch.device(device)
    xtr = inp.train.features.to(dev, torch.float32)
    ytr = inp.train.labels.to(dev)
    yte = inp.test.labels.to(dev)
    preds = knn_predict(xtr, ytr, inp.test.features.to(dev), inp.n_classes, tuple(cfg.k), cfg.temperature,
                        cfg.chunk_size)
    return {f"accuracy_k{k}": 100.0 * float((p == yte).float().mean()) if len(yte) else float("nan")
            for k, p in preds.items()}
