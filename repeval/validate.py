"""``repeval validate``: check the benchmark's estimators against distributions with known answers.

Runs, with the same estimator code the protocols use (project issue 7):

1. Gaussian sweep (MINE, Belghazi et al. 2018, Sec. 5.1.1): MINE (protocols/mine.py) and DIM's
   DV / JSD / infoNCE bounds (repeval.estimators, small separable critic) vs
   I = -(d/2) log(1 - rho^2), d = 2 and 20.
2. Invariance: MINE on (g(X), X + sigma eps) for invertible g vs (d/2) log(1 + 1/sigma^2).
3. NDM calibration (protocols/ndm.py) on Gaussian codes with TC = -1/2 log det R.
4. SSIM / MS-SSIM sanity (protocols/recon.py metrics): identity = 1, decreasing under noise and blur.

Each check prints PASS/FAIL lines against the tolerances stated in
:mod:`repeval.validate_config`; the exit status is 1 when any check fails. Outputs under ``--out``
(``--quick`` writes to ``<out>/quick`` so it never overwrites the committed full run): one CSV,
Markdown table and PNG per check, ``summary.md`` and ``summary.json`` (config, config_hash,
provenance, wall time per check), all written atomically. Deterministic for a fixed seed on CPU
(for a given torch thread count). :func:`rebuild_reports` re-judges and rewrites the reports of a
finished run from its stored rows, without re-running any estimator.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from .config import config_hash
from .progress import log as progress_log
from .provenance import provenance
from .storage import atomic_write_json, atomic_write_text, read_json
from .validate_checks import run_check
from .validate_config import ValidateConfig, full_config, quick_config
from .validate_judge import CheckResult, judge
from .validate_report import summary_markdown, write_check


def _jsonable(x):
    if isinstance(x, float) and x != x:
        return None  # NaN -> null
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


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
        files = write_check(res, out)
        checks[name] = check_record(res, files, out)
        for v in res.verdicts:
            log(f"  {v.line()}")
        log(f"[validate] {name}: {'PASS' if res.passed else 'FAIL'} ({res.wall_s:.1f} s)")
    summary = {"mode": mode, "device": device, "torch_threads": torch.get_num_threads(),
               "total_s": round(time.perf_counter() - t0, 2), "config": dataclasses.asdict(cfg),
               "config_hash": config_hash({"validate": cfg}), "provenance": provenance(device),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checks": checks}
    return _write_summary(summary, out)


def _write_summary(summary: dict, out: Path) -> dict:
    summary["passed"] = all(c["passed"] for c in summary["checks"].values())
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    atomic_write_json(out / "summary.json", _jsonable(summary))
    return summary


def _config_from_json(d: dict) -> ValidateConfig:
    fields = {f.name: f for f in dataclasses.fields(ValidateConfig)}
    return ValidateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})


def _floats(row: dict) -> dict:
    return {k: float("nan") if v is None else v for k, v in row.items()}


def rebuild_reports(out: Path) -> dict:
    """Re-judge and rewrite every table, plot and summary under ``out`` from its stored
    ``summary.json`` rows, without re-running any estimator (verdicts/plots changed, data not).

    Measurements, wall times, provenance and creation time are kept; ``rebuilt`` records when."""
    out = Path(out)
    summary = read_json(out / "summary.json")
    cfg = _config_from_json(summary["config"])
    if config_hash({"validate": cfg}) != summary["config_hash"]:
        raise ValueError(f"{out}/summary.json: config does not match its config_hash")
    for name, c in summary["checks"].items():
        res = judge(name, cfg, [_floats(r) for r in c["rows"]], wall_s=c["wall_s"], info=c.get("info") or {})
        summary["checks"][name] = check_record(res, write_check(res, out), out)
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
