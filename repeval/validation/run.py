"""Run the registered checks, write their files, rebuild reports from stored rows; the CLI entry.

Outputs under ``--out`` (``--quick`` writes to ``<out>/quick`` so it never overwrites the committed
full run): per check a CSV and a Markdown table and its plot(s), then ``summary.md`` and
``summary.json`` (config, config_hash, provenance, wall time per check), all written atomically.
Deterministic for a fixed seed on CPU (for a given torch thread count). ``jobs`` > 1 measures the
checks in that many worker processes at once (spawned, each with this process's torch thread count,
so every number is the one a single process gives): the MI critics run on one thread each
(``repeval.protocols.mine.estimate_mi``), so a single process leaves a second core idle.
:func:`rebuild_reports` re-judges and rewrites the reports of a finished run from its stored rows,
without re-running any estimator.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import torch

from ..config import ConfigError, config_hash
from ..runtime import available_cpus
from ..store.progress import current_setup, setup_logging
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


def measure_check(name: str, cfg: ValidateConfig, device: str, log: Log) -> tuple[list[dict], dict, float]:
    """Measure check ``name``: its rows, its info and the wall seconds it took."""
    t0 = time.perf_counter()
    rows, info = get_check(name).measure(cfg, cfg.of(name), device, log)
    return rows, info, time.perf_counter() - t0


def default_jobs(device: str, checks: int) -> int:
    """Worker processes for ``--jobs`` unset: one per available CPU core (at most one per check) on
    CPU, one on a GPU."""
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(available_cpus(), checks))


def _worker_init(plugins: tuple[str, ...], threads: int, logging_setup: tuple) -> None:
    """A spawned worker: the checks registered as in the parent, its torch thread count, its logging
    (console level and ``--log-file``, :func:`repeval.store.progress.current_setup`)."""
    from ..plugin.loader import register_plugins
    from ..plugin.discovery import load_builtins

    setup_logging(*logging_setup)
    load_builtins()
    register_plugins(plugins)
    torch.set_num_threads(threads)


def _measure_in_worker(name: str, cfg: ValidateConfig, device: str, quiet: bool) -> tuple[list[dict], dict, float]:
    return measure_check(name, cfg, device, lambda s: progress_log(s, quiet))


def _measurements(cfg: ValidateConfig, device: str, jobs: int, plugins: tuple[str, ...], quiet: bool, log: Log):
    """Yield (name, rows, info, wall_s) per check in ``cfg.checks`` order, measured here (``jobs`` = 1)
    or in ``jobs`` spawned worker processes."""
    if jobs <= 1:
        for name in cfg.checks:
            log(f"[validate] {name} ...")
            yield (name, *measure_check(name, cfg, device, log))
        return
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(tuple(plugins), torch.get_num_threads(), current_setup()))
    try:
        log(f"[validate] {', '.join(cfg.checks)} in {jobs} worker processes ...")
        futures: dict[str, Future] = {name: pool.submit(_measure_in_worker, name, cfg, device, quiet)
                                      for name in cfg.checks}
        for name, fut in futures.items():
            yield (name, *fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_record(res: CheckResult, files: list[Path], out: Path) -> dict:
    return {"passed": res.passed, "wall_s": round(res.wall_s, 2),
            "verdicts": [dataclasses.asdict(v) for v in res.verdicts],
            "lines": [v.line() for v in res.verdicts], "notes": res.notes, "columns": res.columns,
            "rows": res.rows, "info": res.info, "files": [str(p.relative_to(out)) for p in files]}


def run_validation(cfg: ValidateConfig, out: Path, *, device: str = "cpu", mode: str = "full",
                   quiet: bool = False, jobs: int = 1, plugins: tuple[str, ...] = ()) -> dict:
    """Run ``cfg.checks`` (in ``jobs`` worker processes when > 1; ``plugins``: the ``--plugin`` files
    they load), write every file under ``out`` as each check finishes, return the summary dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    def log(s: str) -> None:
        progress_log(s, quiet)
    t0 = time.perf_counter()
    checks: dict[str, dict] = {}
    for name, rows, info, wall_s in _measurements(cfg, device, jobs, plugins, quiet, log):
        res = judge(name, cfg, rows, wall_s=wall_s, info=info)
        checks[name] = check_record(res, write_check(get_check(name), res, out), out)
        for v in res.verdicts:
            log(f"  {v.line()}")
        log(f"[validate] {name}: {'PASS' if res.passed else 'FAIL'} ({res.wall_s:.1f} s)")
    conf = cfg.to_dict()
    summary = {"mode": mode, "device": device, "torch_threads": torch.get_num_threads(), "jobs": max(1, jobs),
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
    """CLI entry: args.quick, args.device, args.out, args.quiet, args.jobs (None: :func:`default_jobs`;
    absent: 1), args.plugin. Exit 0 = every check passed.

    ``config`` replaces the quick/full budget (tests pass a tiny grid)."""
    cfg = config or (quick_config() if args.quick else full_config())
    out = Path(args.out) / "quick" if args.quick else Path(args.out)
    jobs = getattr(args, "jobs", 1)
    if jobs is None:
        jobs = default_jobs(args.device, len(cfg.checks))
    elif jobs < 1:
        raise ConfigError(f"validate --jobs must be >= 1, got {jobs}")
    summary = run_validation(cfg, out, device=args.device, mode="quick" if args.quick else "full",
                             quiet=args.quiet, jobs=jobs, plugins=tuple(getattr(args, "plugin", ())))
    print_summary(summary, out)
    return 0 if summary["passed"] else 1
