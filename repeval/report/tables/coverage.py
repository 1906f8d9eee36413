"""Which records no table shows, and why (pure): the one line ``repeval table`` prints per dataset.

Table T (:data:`repeval.report.tables.build.TABLET`) holds every tap of every model at each model's table
epoch, so a record is left out only when it is at another encoder epoch (a learning-curve point),
failed, or belongs to a protocol that is not registered now or reports no metric.
"""
from __future__ import annotations

from collections import defaultdict

from ...registry import PROTOCOLS
from .build import TABLET, at_epoch, record_epoch


def unshown(records: list[dict], epoch: int | None = None) -> dict[str, list[dict]]:
    """Reason -> the records (of one dataset) that no table built at ``epoch`` shows, in record order."""
    reported = TABLET.protocols
    shown_epoch = {id(r) for r in at_epoch(records, epoch, reported)}
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        p = r.get("protocol")
        if p not in PROTOCOLS:
            out[f"of protocol '{p}', not registered now (load its --plugin)"].append(r)
        elif p not in reported:
            out[f"of protocol '{p}', which reports no metric (its Reporting is empty)"].append(r)
        elif id(r) not in shown_epoch:
            out["at another encoder epoch than the tables' (learning_curve.csv; repeval table --epoch E)"].append(r)
        elif not r.get("success"):
            out["failed (named in the tables' footnotes)"].append(r)
    return dict(out)


def format_unshown(groups: dict[str, list[dict]], n_records: int) -> str:
    """One line: how many records no table shows, per reason, with up to two examples each."""
    if not groups:
        return f"every record ({n_records}) is in a table"
    parts = []
    for reason, recs in groups.items():
        ex = ", ".join(f"{r['model']}/{r['protocol']}/{r.get('tap')}@{record_epoch(r)}" for r in recs[:2])
        parts.append(f"{len(recs)} {reason} (e.g. {ex}{', ...' if len(recs) > 2 else ''})")
    return f"{sum(map(len, groups.values()))} of {n_records} records in no table: " + "; ".join(parts)
