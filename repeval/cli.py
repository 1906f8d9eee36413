"""Command line: ``repeval run | list | config | status | table | validate``.

Bad input (unknown name, bad config key, missing data, corrupt checkpoint, a user's encoder with the
wrong outputs) ends with one line on stderr saying what and where, and a non-zero exit; records
already written stay. Global options (``--plugin``, ``--pretrained``, ``--backbone``, ``-v``, ``-q``,
``--log-file``) are accepted before or after the subcommand.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .config import ConfigError, format_sections, merge_overrides, parse_overrides, to_dict
from .data import dataset_names
from .engine.config_file import read_config_file
from .engine.presets import PRESETS
from .engine.session import RunRequest, execute, guarded
from .launch import LaunchError, check_jobs
from .launch.options import add_run_options, add_status_command
from .plugin.discovery import load_builtins
from .plugin.loader import register_plugins
from .registry import MODELS, PROTOCOLS


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _listarg(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out += _csv(v) or []
    return out


# Options accepted before and after the subcommand: (flags, argparse keywords). After the subcommand
# they are stored under "sub_<dest>" and merged by _merge_globals (lists add up, -v counts add up,
# a value given after the subcommand wins).
GLOBAL_OPTIONS = (
    (("--plugin",), dict(action="append", default=[], metavar="FILE.py",
                         help="a Python file that registers encoders/protocols (repeatable)")),
    (("--pretrained",), dict(action="append", default=[], metavar="NAME=PATH",
                             help="register a shared-encoder state dict as model NAME (repeatable)")),
    (("--backbone",), dict(action="append", default=[], metavar="NAME=SOURCE:ARCH[:WEIGHTS][,KEY=VALUE...]",
                           help="register a torchvision/timm model as frozen encoder NAME, e.g. "
                                "r18=torchvision:resnet18:r18.pt,input_size=64,taps=layer3+layer4 "
                                "(keys: taps, input_size, normalize=auto|imagenet|none, pool, display; "
                                "repeatable)")),
    (("-v", "--verbose"), dict(action="count", default=0, help="more log lines (debug)")),
    (("-q", "--quiet"), dict(action="store_true", help="no progress bars or info lines; warnings and errors only")),
    (("--log-file",), dict(type=Path, metavar="FILE", help="also write every log line (with times) to FILE")),
)


def _global_parser(after_subcommand: bool) -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(add_help=False)
    group = g.add_argument_group("global options")
    for flags, kw in GLOBAL_OPTIONS:
        kw = dict(kw)
        if after_subcommand:
            kw.update(default=argparse.SUPPRESS, dest="sub_" + flags[-1].lstrip("-").replace("-", "_"))
        group.add_argument(*flags, **kw)
    return g


def _merge_globals(args: argparse.Namespace) -> argparse.Namespace:
    for flags, kw in GLOBAL_OPTIONS:
        dest = flags[-1].lstrip("-").replace("-", "_")
        if not hasattr(args, "sub_" + dest):
            continue
        late = getattr(args, "sub_" + dest)
        delattr(args, "sub_" + dest)
        early = getattr(args, dest)
        if kw.get("action") in ("append", "count"):
            late = early + late
        elif kw.get("action") == "store_true":
            late = early or late
        setattr(args, dest, late)
    return args


def build_parser() -> argparse.ArgumentParser:
    from .runtime import __version__

    p = argparse.ArgumentParser(prog="repeval", description=__doc__.splitlines()[0],
                                parents=[_global_parser(False)])
    p.add_argument("--version", action="version", version=f"repeval {__version__}")
    common = [_global_parser(True)]
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train/load encoders, extract features, run protocols, write records",
                       parents=common)
    r.add_argument("--models", nargs="+", help="model names, space or comma separated (default: all)")
    r.add_argument("--protocols", nargs="+", help="protocol names (default: all)")
    r.add_argument("--dataset", help="digits | cifar10 | cifar100 | stl10 | svhn | npz:DIR | imagefolder:DIR "
                                     "(default: the preset's)")
    r.add_argument("--preset", help="budget preset (default: the --config file's, else quick)")
    r.add_argument("--config", type=Path, metavar="FILE.toml",
                   help="config values from a file (what `repeval config` prints); --set wins per key")
    r.add_argument("--seeds", type=int, help="seeds per protocol (default: each protocol's: mlp 3, svm 5, others 1)")
    r.add_argument("--train-seeds", metavar="T[,T...]",
                   help="train one encoder per training seed (e.g. 0,1,2; default: train.seed); "
                        "records of seed T != 0 are stored as <tap>-trainT-seed<S>-epoch<E>.json")
    r.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    r.add_argument("--workdir", default=".repeval", type=Path, help="checkpoints and feature cache")
    r.add_argument("--results", default="results", type=Path, help="where result records go")
    r.add_argument("--data-root", help="folder holding torchvision's CIFAR files "
                                       "(default ~/.cache/repeval/data)")
    r.add_argument("--download", action="store_true",
                   help="allow downloading CIFAR or a --backbone's published weights (network)")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. train.epochs=2 or mlp.epochs=5")
    r.add_argument("--no-table", action="store_true", help="do not print the tables at the end")
    r.add_argument("--force", action="store_true",
                   help="recompute every requested record, retraining and re-extracting the encoders")
    r.add_argument("--rerun", action="append", default=[], metavar="MODEL[/PROTOCOL]",
                   help="recompute MODEL (retrain, re-extract, re-evaluate) or only its PROTOCOL records")
    r.add_argument("--train-only", action="store_true",
                   help="train the encoders (keeping every evaluation epoch) and evaluate nothing")
    r.add_argument("--dry-run", action="store_true",
                   help="print what would be trained, extracted and evaluated (and what is present); compute nothing")
    r.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="also log per-epoch training losses for TensorBoard under DIR (needs tensorboard)")

    add_run_options(r)

    sub.add_parser("list", help="show models, protocols, datasets and presets", parents=common)
    add_status_command(sub)

    c = sub.add_parser("config", help="print the fully resolved configuration (preset + --set)", parents=common)
    c.add_argument("--preset", help="budget preset (default: the --config file's, else quick)")
    c.add_argument("--config", type=Path, metavar="FILE.toml", help="config values from a file; --set wins per key")
    c.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. train.epochs=2 or mlp.epochs=5")
    c.add_argument("--protocols", nargs="+", help="protocol sections to show (default: all)")
    c.add_argument("--format", choices=("toml", "json"), default="toml", help="output format (default: toml)")

    t = sub.add_parser("table", help="regenerate Tables 1, 4 and X and the learning curves from stored records",
                       parents=common)
    t.add_argument("--dataset", action="append", help="dataset label(s) under results/ (default: all)")
    t.add_argument("--results", default="results", type=Path)
    t.add_argument("--format", default="md,tex,csv", help="comma list of md, tex, csv")
    t.add_argument("--out", type=Path, help="output folder (default: results/<dataset>/)")
    t.add_argument("--no-plots", action="store_true")
    t.add_argument("--epoch", type=int, help="encoder training epoch of the tables (default: each model's last)")

    v = sub.add_parser("validate", help="check the MI/NDM/SSIM estimators against closed forms",
                       parents=common)
    v.add_argument("--quick", action="store_true")
    v.add_argument("--device", default="cpu")
    v.add_argument("--out", default=Path("results/validation"), type=Path)
    v.add_argument("--jobs", type=int, metavar="N",
                   help="checks measured at once, each in its own process (default: one per CPU core, "
                        "1 on a GPU); the numbers are those of one process")
    return p


def cmd_list() -> int:
    print("models:")
    for n in MODELS:
        spec = MODELS.get(n)
        print(f"  {n:<16} {spec.display}" + (f"  [{spec.source}]" if spec.source != "repeval" else ""))
    print("protocols:")
    for n in PROTOCOLS:
        s = PROTOCOLS.get(n)
        print(f"  {n:<16} {s.display} (taps: {s.taps}, seeds: {s.seeds})")
    print("datasets:")
    for n in dataset_names():
        print(f"  {n}")
    print("presets:")
    for n in PRESETS:
        pr = PRESETS.get(n)
        print(f"  {n:<16} {pr.description}; train {pr.section('train')}")
    return 0


def run_request(args, models: list[str], protocols: list[str]) -> RunRequest:
    """The parsed command line as a :class:`RunRequest`: the preset (``--preset``, else the ``--config``
    file's, else quick), its overrides (the ``--config`` file's, then ``--set``, which wins per key),
    and every other option of ``run`` (defaults for ``config``, which has fewer)."""
    preset_name, from_file = read_config_file(args.config) if args.config else (None, {})
    preset = PRESETS.get(args.preset or preset_name or "quick")
    opt = vars(args).get
    path = lambda v: str(v) if v is not None else None  # noqa: E731
    return RunRequest(
        models=tuple(models), protocols=tuple(protocols), preset=preset.name,
        dataset=opt("dataset") or preset.dataset, overrides=merge_overrides(from_file, parse_overrides(args.set)),
        config=path(args.config), seeds=opt("seeds"), train_seeds=_int_list(opt("train_seeds"), "--train-seeds"),
        device=opt("device") or "cpu", workdir=str(opt("workdir") or ".repeval"), results=str(opt("results") or "results"),
        data_root=path(opt("data_root")), download=bool(opt("download")), force=bool(opt("force")),
        rerun=tuple(_listarg(opt("rerun")) or ()), train_only=bool(opt("train_only")), dry_run=bool(opt("dry_run")),
        tensorboard=path(opt("tensorboard")), no_table=bool(opt("no_table")), plugins=tuple(args.plugin),
        pretrained=tuple(args.pretrained), backbones=tuple(args.backbone), verbose=args.verbose, quiet=args.quiet,
        log_file=path(args.log_file), jobs=opt("jobs") if (opt("executor") or "inline") == "inline" else None)


def resolved_sections(opts) -> dict[str, object]:
    """Every config section of a run with ``opts``, fully resolved (preset + --set): ``train``, each
    protocol's, and each model's family config under its ``--set`` section (``SECTION.MODEL`` when
    several models share that section with different defaults)."""
    from .engine.runner import resolve_configs

    cfg = resolve_configs(opts)
    out: dict[str, object] = {"train": cfg.train, **cfg.protocols}
    specs = [MODELS.get(m) for m in opts.models]
    shared = Counter(s.section for s in specs if s.section)
    for spec in specs:
        fcfg = cfg.families[spec.name]
        if fcfg is not None and to_dict(fcfg):
            out[spec.section if shared[spec.section] == 1 else spec.model_section] = fcfg
    return out


def _resolved(req: RunRequest) -> dict[str, object]:
    """:func:`resolved_sections`, a config error naming the ``--config`` file when one was read."""
    try:
        return resolved_sections(req.options())
    except ConfigError as e:
        if req.config:
            raise ConfigError(f"{e} (settings from --config {req.config}, then --set)") from None
        raise


def cmd_config(args) -> int:
    protocols = _listarg(args.protocols) or PROTOCOLS.names()
    for q in protocols:
        PROTOCOLS.get(q)
    req = run_request(args, MODELS.names(), protocols)
    opts = req.options()
    sections = _resolved(req)
    if args.format == "json":
        print(json.dumps({"preset": opts.preset.name, "dataset": opts.preset.dataset,
                          "sections": {k: to_dict(v) for k, v in sections.items()}}, indent=2))
    else:
        print(f"# repeval config: preset '{opts.preset.name}' (dataset {opts.preset.dataset})"
              + (f", --config {args.config}" if args.config else "")
              + (f", --set {' '.join(args.set)}" if args.set else "")
              + "; read back with repeval run --config FILE.toml")
        print(format_sections(sections, {"preset": opts.preset.name}))
    return 0


def _int_list(text: str | None, flag: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); a one-line ConfigError naming ``flag`` otherwise."""
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got {text!r}") from None


def cmd_run(args) -> int:
    models = list(dict.fromkeys(_listarg(args.models) or MODELS.names()))     # a name given twice runs once
    protocols = list(dict.fromkeys(_listarg(args.protocols) or PROTOCOLS.names()))
    for m in models:
        MODELS.get(m)
    for q in protocols:
        PROTOCOLS.get(q)
    req = run_request(args, models, protocols)
    _resolved(req)  # bad keys, values, seeds and devices fail before the dataset is even loaded
    check_jobs(args.jobs)
    if args.executor != "inline" or args.devices is not None:
        from .launch import launch
        return launch(req, args)  # one shard per model, each running its own copy of req
    totals = execute(req)
    if req.dry_run or req.train_only:
        return 1 if totals.failures else 0
    if not req.no_table:
        from .report.tables import print_tables
        for label, group in totals.shown:
            print_tables(Path(req.results), label, group)
    print(totals.line(), file=sys.stderr)
    return 1 if totals.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = _merge_globals(build_parser().parse_args(argv))
    return guarded(args.command, _folders(args), -1 if args.quiet else args.verbose, args.log_file,
                   lambda: _dispatch(args), errors=(LaunchError,))


def _folders(args) -> dict[str, Path]:
    """The folders a command writes to (results and work for ``run``, ``table`` and ``status``)."""
    return {"results": Path(getattr(args, "results", None) or "results"),
            "work": Path(getattr(args, "workdir", None) or ".repeval")}


def _dispatch(args) -> int:
    load_builtins()
    register_plugins(args.plugin, args.pretrained, args.backbone, getattr(args, "download", False))
    if args.command == "list":
        return cmd_list()
    if args.command == "config":
        return cmd_config(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "status":
        from .launch.status import cmd_status
        return cmd_status(args)
    if args.command == "table":
        from .report.tables import cmd_table
        return cmd_table(args)
    if args.command == "validate":
        from .validation import cmd_validate
        return cmd_validate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
