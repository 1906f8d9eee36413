"""``repeval status``: where each shard of a launch stands, read from the filesystem alone.

A shard is *running* while its process holds the shard lock, *done* or *failed* once it has written
its outcome file (a failure shows the last line ``repeval`` printed), *requeued* after a preemption
or time-out, *failed* (stopped without finishing) when its job wrote a log but neither an outcome nor
a lock is left (killed, out of memory, node lost), and *not started* otherwise (still queued).
Models being run inline (``--executor inline``) show as running while they hold their model lock.
"""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from ..store.locks import lock_holder
from ..store.records import ResultsLayout
from .layout import launch_root, read_manifest, read_outcome
from .shard import logs_tail


def shard_state(folder: Path, shard: dict) -> tuple[str, str]:
    """(state, detail) of one shard of the manifest in ``folder``."""
    model = shard["model"]
    holder = lock_holder(shard["lock"]) if shard.get("lock") else None
    if holder:
        return "running", f"{holder}, job {shard.get('job_id')}"
    out = read_outcome(folder, model)
    if out and out.get("state") == "done":
        return "done", ""
    if out and out.get("state") == "failed":
        return "failed", f"{out.get('error') or 'exit ' + str(out.get('exit'))} (log {shard.get('stderr')})"
    if out and out.get("state") == "requeued":
        return "requeued", f"preempted or timed out at {out.get('time')}; resumes from its checkpoint"
    log = shard.get("stderr")
    if log and Path(log).exists():
        return "failed", f"stopped without finishing; last log line: {logs_tail(log) or '(empty)'} (log {log})"
    return "not started", "queued" if shard.get("job_id") else "not submitted yet"


def _records(results: Path, dataset: str, model: str) -> int:
    layout = ResultsLayout(results, dataset)   # record_files: the walker run and table use (no links)
    return sum(1 for p in layout.record_files() if p.relative_to(layout.records_dir).parts[0] == model)


def _latest(workdir: Path, wanted: str | None) -> tuple[Path, dict] | None:
    root = launch_root(workdir)
    folders = [root / wanted] if wanted else sorted(root.glob("*"), key=lambda p: p.name, reverse=True)
    for f in folders:
        m = read_manifest(f)
        if m is not None:
            return f, m
    return None


def inline_rows(workdir: Path, results: Path, skip: set[tuple[str, str]]) -> list[list[str]]:
    """Models running inline: their model lock is held."""
    rows = []
    for lock in sorted((Path(workdir) / "locks").glob("*/*.lock")):
        dataset, model = lock.parent.name, lock.stem
        holder = lock_holder(lock)
        if holder and (dataset, model) not in skip:
            rows.append([model, dataset, "running", _records(results, dataset, model), f"{holder} (inline)"])
    return rows


def cmd_status(args) -> int:
    workdir, results = Path(args.workdir), Path(args.results)
    found = _latest(workdir, args.launch)
    rows, seen = [], set()
    if found is None and args.launch:
        from .errors import LaunchError
        raise LaunchError(f"no launch {args.launch!r} under {launch_root(workdir)}")
    if found is not None:
        folder, m = found
        label = m.get("dataset", "?")
        for shard in m["shards"]:
            state, detail = shard_state(folder, shard)
            rows.append([shard["model"], label, state, _records(results, label, shard["model"]), detail])
            seen.add((label, shard["model"]))
        counts = {s: sum(r[2] == s for r in rows) for s in ("done", "running", "requeued", "failed", "not started")}
        print(f"launch {m['id']} ({m.get('executor')}" + (f", Slurm job {m['slurm_job']}" if m.get("slurm_job") else "")
              + f", {len(rows)} shards on {label}): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    rows += inline_rows(workdir, results, seen)
    if not rows:
        print(f"no launches under {launch_root(workdir)} and no model running on {workdir}")
        return 0
    print(tabulate(rows, headers=["model", "dataset", "state", "records", "detail"], tablefmt="simple"))
    return 0
