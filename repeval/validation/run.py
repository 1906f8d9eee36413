"""Run the registered checks, write their files, rebuild reports from stored rows; the CLI entry.

Outputs under ``--out`` (``--quick`` writes to ``<out>/quick`` so it never overwrites the committed
full run): per check a CSV and a Markdown table and its plot(s), then ``summary.md`` and
``summary.json`` (config, config_hash, provenance, wall time per check), all written atomically.
Deterministic for a fixed seed on CPU (for a given torch thread count). :func:`rebuild_reports`
re-judges and rewrites the reports of a finished run from its stored rows, without re-running any
estimator.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from ..config import ConfigError, config_hash
from ..store.progress import log as progress_log
from ..store.provenance import provenance
from ..store.storage import atomic_write_json, atomic_write_text, read_json
from .config import ValidateConfig, full_config, quick_config
from .registry import CheckResult, Log, get_check
from .report import summary_markdown, write_check


def _jsonable(x):
    if isinstance(x, float) and x != x:
        return None  # NaN -> null
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _floats(row: dict) -> dict:
    return {k: float("nan") if v is None else v for k, v in row.items()}


def judge(name: str, cfg: ValidateConfig, rows: list[dict], *, wall_s: float = 0.0, info: dict | None = None
          ) -> CheckResult:
    """Verdicts, notes and column meanings of check ``name`` for its measured ``rows``."""
    chk = get_check(name)
    info = dict(info or {})
    verdicts, notes = chk.judge(cfg, cfg.of(name), rows, info)
    return CheckResult(name, rows, chk.column_meanings(rows), verdicts, notes + list(info.get("notes", [])),
                       wall_s, info)


def run_check(name: str, cfg: ValidateConfig, device: str, log: Log) -> CheckResult:
    """Measure check ``name`` (wall time recorded) and judge it against its stated tolerances."""
    t0 = time.perf_counter()
    rows, info = get_check(name).measure(cfg, cfg.of(name), device, log)
    return judge(name, cfg, rows, wall_s=time.perf_counter() - t0, info=info)


def check_record(res: CheckResult, files: list[Path], out: Path) -> dict:
    return {"passed": res.passed, "wall_s": round(res.wall_s, 2),
            "verdicts": [dataclasses.asdict(v) for v in res.verdicts],
            "lines": [v.line() for v in res.verdicts], "notes": res.notes, "columns": res.columns,
            "rows": res.rows, "info": res.info, "files": [str(p.relative_to(out)) for p in files]}


def run_validation(cfg: ValidateConfig, out: Path, *, device: str = "cpu", mode: str = "full",
                   quiet: bool = False) -> dict:
    """Run ``cfg.checks`` in order, write every file under ``out``, return the summary dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    def log(s: str) -> None:
        progress_log(s, quiet)
    t0 = time.perf_counter()
    checks: dict[str, dict] = {}
    for name in cfg.checks:
        log(f"[validate] {name} ...")
        res = run_check(name, cfg, device, log)
        checks[name] = check_record(res, write_check(get_check(name), res, out), out)
        for v in res.verdicts:
            log(f"  {v.line()}")
        log(f"[validate] {name}: {'PASS' if res.passed else 'FAIL'} ({res.wall_s:.1f} s)")
    conf = cfg.to_dict()
    summary = {"mode": mode, "device": device, "torch_threads": torch.get_num_threads(),
               "total_s": round(time.perf_counter() - t0, 2), "config": conf,
               "config_hash": config_hash({"validate": conf}), "provenance": provenance(device),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checks": checks}
    return _write_summary(summary, out)


def _write_summary(summary: dict, out: Path) -> dict:
    summary["passed"] = all(c["passed"] for c in summary["checks"].values())
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    atomic_write_json(out / "summary.json", _jsonable(summary))
    return summary


def rebuild_reports(out: Path) -> dict:
    """Re-judge and rewrite every table, plot and summary under ``out`` from its stored
    ``summary.json`` rows, without re-running any estimator (verdicts/plots changed, data not).

    Measurements, wall times, provenance and creation time are kept; ``rebuilt`` records when."""
    out = Path(out)
    summary = read_json(out / "summary.json")
    if config_hash({"validate": summary["config"]}) != summary["config_hash"]:
        raise ConfigError(f"{out}/summary.json: config does not match its config_hash")
    cfg = ValidateConfig.from_dict(summary["config"])
    for name, c in summary["checks"].items():
        res = judge(name, cfg, [_floats(r) for r in c["rows"]], wall_s=c["wall_s"], info=c.get("info") or {})
        summary["checks"][name] = check_record(res, write_check(get_check(name), res, out), out)
    summary["rebuilt"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return _write_summary(summary, out)


def print_summary(summary: dict, out: Path) -> None:
    for name, c in summary["checks"].items():
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {name:<11} ({c['wall_s']:.1f} s)")
        for line in c["lines"]:
            print(f"    {line}")
    print(f"{'PASS' if summary['passed'] else 'FAIL'}: {sum(c['passed'] for c in summary['checks'].values())}/"
          f"{len(summary['checks'])} checks passed in {summary['total_s']:.1f} s; results in {out}")


def cmd_validate(args, config: ValidateConfig | None = None) -> int:
    """CLI entry: args.quick, args.device, args.out, args.quiet. Exit 0 = every check passed.

    ``config`` replaces the quick/full budget (tests pass a tiny grid)."""
    cfg = config or (quick_config() if args.quick else full_config())
    out = Path(args.out) / "quick" if args.quick else Path(args.out)
    summary = run_validation(cfg, out, device=args.device, mode="quick" if args.quick else "full",
                             quiet=args.quiet)
    print_summary(summary, out)
    return 0 if summary["passed"] else 1
