"""Files written by ``repeval validate``: per-check CSV and Markdown tables, the check's plots and
extra tables, a Markdown summary; every write is atomic (:mod:`repeval.store.storage`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..store.storage import atomic_write_text
from .registry import Check, CheckResult


def _markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".4g")


def check_markdown(res: CheckResult, extra_tables: dict[str, pd.DataFrame] | None = None) -> str:
    lines = [f"# validate: {res.name}", "", f"wall time {res.wall_s:.1f} s", ""]
    lines += [f"- {v.line()}" for v in res.verdicts] + [""]
    lines += [f"{n}" for n in res.notes] + [""]
    lines += [_markdown(pd.DataFrame(res.rows)), "", "Columns:", ""]
    lines += [f"- `{k}`: {v}" for k, v in res.columns.items()]
    for title, df in (extra_tables or {}).items():
        lines += ["", f"## {title}", "", _markdown(df)]
    return "\n".join(lines) + "\n"


def write_check(check: Check, res: CheckResult, out: Path) -> list[Path]:
    """``<name>.csv``, the check's extra tables (CSV), ``<name>.md`` and the check's plot(s) under
    ``out``; returns the paths written."""
    paths = [atomic_write_text(out / f"{res.name}.csv", pd.DataFrame(res.rows).to_csv(index=False))]
    extra = {}
    for title, (stem, rows) in check.tables(res).items():
        extra[title] = df = pd.DataFrame(rows)
        paths.append(atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False)))
    paths.append(atomic_write_text(out / f"{res.name}.md", check_markdown(res, extra)))
    paths += check.plot(res, out)
    return paths


def summary_markdown(summary: dict) -> str:
    jobs = summary.get("jobs", 1)   # absent from runs before --jobs
    workers = f", {jobs} worker processes" if jobs > 1 else ""
    lines = [f"# repeval validate ({summary['mode']})", "",
             f"Result: **{'PASS' if summary['passed'] else 'FAIL'}**; total wall time {summary['total_s']:.1f} s "
             f"on {summary['device']} ({summary['provenance']['machine'].get('platform', '')}, "
             f"torch threads {summary['torch_threads']}{workers}); config hash `{summary['config_hash']}`, "
             f"commit `{summary['provenance']['git_commit']}`.", ""]
    for name, c in summary["checks"].items():
        lines.append(f"## {name} ({c['wall_s']:.1f} s): {'PASS' if c['passed'] else 'FAIL'}")
        lines.append("")
        lines += [f"- {line}" for line in c["lines"]]
        lines += [""] + [f"{n}" for n in c["notes"]] + [""]
        lines.append("Files: " + ", ".join(f"`{p}`" for p in c["files"]))
        lines.append("")
    return "\n".join(lines)
