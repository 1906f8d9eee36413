"""Records -> learning curves: a protocol's headline metric against the encoder's training epoch
(pure, no I/O).

Drawn for the protocols that declare ``curve`` in their :class:`repeval.plugin.protocol.Reporting` (the
probe ``mlp``; ``knn`` and ``linear`` when present), per model and tap: mean, sample std and seed
count over the seeds of one configuration at each epoch (:func:`repeval.report.tables.build.record_epoch`,
:func:`repeval.report.tables.build.one_configuration`). A curve follows the same trained encoders at
every epoch: when a model has extra training seeds evaluated at some epochs only (e.g. at the last),
the curve keeps the training seeds present at all of its epochs (column ``train_seeds``); the
tables average every encoder at their epoch. The random-init
encoder (model ``random``, epoch 0) is the floor the figure draws as a horizontal line.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from ...registry import PROTOCOLS
from .build import _finite, _order_key, one_configuration, record_epoch, record_train_seed

CURVE_COLUMNS = ["dataset", "model", "display", "protocol", "metric", "tap", "epoch", "mean", "std", "n", "seeds",
                 "train_seeds"]


def curve_table(records: list[dict], dataset: str) -> pd.DataFrame:
    """One row per (model, protocol, headline metric, tap, epoch) of ``dataset``'s successful records.

    Rows are ordered as Table 1 orders models, then protocol (registration order), metric, tap,
    epoch; ``std`` is NaN for a single seed."""
    metrics = {p: PROTOCOLS.get(p).report.metrics for p in PROTOCOLS if PROTOCOLS.get(p).report.curve}
    values: dict[tuple, list[dict]] = defaultdict(list)
    display: dict[str, str] = {}
    for r in records:
        proto = r.get("protocol")
        if r.get("dataset", dataset) != dataset or proto not in metrics or not r.get("success"):
            continue
        display.setdefault(r["model"], r.get("display") or r["model"])
        for m in metrics[proto]:
            v = (r.get("metrics") or {}).get(m)
            if _finite(v):
                values[(r["model"], proto, m, str(r.get("tap", "")), record_epoch(r))].append(r)
    encoders: dict[tuple, list[set[int]]] = defaultdict(list)     # one curve -> training seeds per epoch
    for key, recs in values.items():
        encoders[key[:4]].append({record_train_seed(r) for r in recs})
    proto_rank = {p: i for i, p in enumerate(PROTOCOLS)}
    rows = []
    for (model, proto, metric, tap, epoch), recs in values.items():
        keep = set.intersection(*encoders[(model, proto, metric, tap)]) or {record_train_seed(r) for r in recs}
        sel = one_configuration([r for r in recs if record_train_seed(r) in keep])[0]
        sv = [(r.get("seed", 0), r["metrics"][metric]) for r in sel]
        vals = np.array([v for _, v in sv], dtype=float)
        rows.append({"dataset": dataset, "model": model, "display": display[model], "protocol": proto,
                     "metric": metric, "tap": tap, "epoch": epoch, "mean": float(vals.mean()),
                     "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan, "n": len(vals),
                     "seeds": " ".join(str(s) for s, _ in sorted(sv)),
                     "train_seeds": " ".join(map(str, sorted({record_train_seed(r) for r in sel})))})
    rows.sort(key=lambda r: (_order_key(1, r["model"], r["display"]), proto_rank[r["protocol"]],
                             metrics[r["protocol"]].index(r["metric"]), r["tap"], r["epoch"]))
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)
