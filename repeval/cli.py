"""Command line: ``repeval run | list | config | status | table | validate``.

Bad input (unknown name, bad config key, missing data, corrupt checkpoint, a user's encoder with the
wrong outputs) ends with one line on stderr saying what and where, and a non-zero exit; records
already written stay. Global options (``--plugin``, ``--pretrained``, ``--backbone``, ``-v``, ``-q``,
``--log-file``) are accepted before or after the subcommand.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

from . import load_builtins
from .config import ConfigError, format_sections, merge_overrides, parse_overrides, to_dict
from .engine.config_file import read_config_file
from .data import DataError, dataset_names, load_dataset
from .engine.features import EncoderContractError
from .store.guards import check_log_file, describe_os_error
from .launch import LaunchError
from .launch.options import add_run_options, add_status_command
from .plugin.loader import PluginError, load_plugin
from .engine.presets import PRESETS
from .store.progress import LOGGER, TensorBoardLog, setup_logging
from .store.records import RecordError
from .registry import MODELS, PROTOCOLS, RegistryError
from .store.storage import CheckpointError

USER_ERRORS = (RegistryError, ConfigError, DataError, PluginError, CheckpointError, EncoderContractError,
               RecordError, LaunchError)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends): handled like Ctrl-C, exit status 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


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


def _run_options(args, protocols: list[str], models: list[str] | None = None, **kw):
    """The run's options: the preset (``--preset``, else the ``--config`` file's, else quick) and its
    overrides (the ``--config`` file's, then ``--set``, which wins per key)."""
    from .engine.runner import RunOptions

    preset, from_file = read_config_file(args.config) if args.config else (None, {})
    return RunOptions(models=models or [], protocols=protocols, preset=PRESETS.get(args.preset or preset or "quick"),
                      overrides=merge_overrides(from_file, parse_overrides(args.set)), **kw)


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
        fcfg = spec.family_config(cfg.families)
        if fcfg is not None and to_dict(fcfg):
            out[spec.section if shared[spec.section] == 1 else spec.model_section] = fcfg
    return out


def _resolved(opts, args) -> dict[str, object]:
    """:func:`resolved_sections`, a config error naming the ``--config`` file when one was read."""
    try:
        return resolved_sections(opts)
    except ConfigError as e:
        if args.config:
            raise ConfigError(f"{e} (settings from --config {args.config}, then --set)") from None
        raise


def cmd_config(args) -> int:
    protocols = _listarg(args.protocols) or PROTOCOLS.names()
    for q in protocols:
        PROTOCOLS.get(q)
    opts = _run_options(args, protocols, MODELS.names())
    sections = _resolved(opts, args)
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
    from .engine.runner import run

    models = list(dict.fromkeys(_listarg(args.models) or MODELS.names()))     # a name given twice runs once
    protocols = list(dict.fromkeys(_listarg(args.protocols) or PROTOCOLS.names()))
    for m in models:
        MODELS.get(m)
    for q in protocols:
        PROTOCOLS.get(q)
    opts = _run_options(args, protocols, models, seeds=args.seeds, device=args.device, workdir=args.workdir,
                        results=args.results, quiet=args.quiet, force=args.force,
                        rerun=tuple(_listarg(args.rerun) or ()), dry_run=args.dry_run, train_only=args.train_only,
                        train_seeds=_int_list(args.train_seeds, "--train-seeds"))
    _resolved(opts, args)  # bad keys, values, seeds and devices fail before the dataset is even loaded
    if args.executor != "inline" or args.jobs is not None or args.devices is not None:
        from .launch import launch
        return launch(args, opts)  # one shard per model, each `repeval run` in its own job
    tb = opts.on_epoch = TensorBoardLog(args.tensorboard) if args.tensorboard and not args.dry_run else None
    written, skipped, failures, shown = 0, 0, 0, []
    try:
        for ds, group in datasets_for(args.dataset or opts.preset.dataset, models, args):
            summary = run(replace(opts, models=group, rerun=tuple(r for r in opts.rerun
                                                                  if r.partition("/")[0] in group)), ds)
            written, skipped, failures = (written + len(summary.written), skipped + summary.skipped,
                                          failures + len(summary.failures))
            shown.append((ds.name, group))
    finally:
        if tb:
            tb.close()
    if args.dry_run or args.train_only:
        return 1 if failures else 0
    if not args.no_table:
        from .report.tables import print_tables
        for label, group in shown:
            print_tables(args.results, label, group)
    print(f"{written} records written, {skipped} already present, {failures} failures", file=sys.stderr)
    return 1 if failures else 0


def datasets_for(spec: str, models: list[str], args):
    """(dataset, models) to run: the dataset once for every model, or, for ``imagefolder:`` data,
    once per input size the models take (:func:`repeval.zoo.input_size_groups`), loaded lazily."""
    from .plugin.zoo import input_size_groups

    groups = input_size_groups(models) if spec.startswith("imagefolder:") else [(None, models)]
    for size, group in groups:
        yield load_dataset(spec, args.data_root, args.download, image_size=size), group


def register_from_args(args) -> None:
    """Plugins, --pretrained checkpoints and --backbone models named on the command line."""
    from .plugin.backbones import parse_backbone_arg
    from .estimators.nets import SharedEncoder
    from .plugin.zoo import register_backbone_spec, register_encoder

    for path in args.plugin:
        load_plugin(path)
    for item in args.pretrained:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--pretrained expects NAME=PATH, got {item!r}")
        register_encoder(name, SharedEncoder, checkpoint=path, source="pretrained", origin=f"--pretrained {item}")
    for item in args.backbone:
        name, spec, display = parse_backbone_arg(item, download=getattr(args, "download", False))
        register_backbone_spec(name, spec, display, origin=f"--backbone {item}")


def main(argv: list[str] | None = None) -> int:
    args = _merge_globals(build_parser().parse_args(argv))
    # A handler someone else installed stays: in a submitit job (--executor slurm) SIGTERM is left
    # to submitit, whose USR2 hook checkpoints and requeues the shard. Signals: main thread only.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    ours = previous == signal.SIG_DFL and main_thread
    if ours:
        signal.signal(signal.SIGTERM, _on_sigterm)
    if hasattr(signal, "SIGXFSZ") and main_thread:   # a file-size limit: an OSError naming the file, not a kill
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    folders = _folders(args)
    try:
        setup_logging(-1 if args.quiet else args.verbose, None)
        check_log_file(args.log_file, folders)
        setup_logging(-1 if args.quiet else args.verbose, args.log_file)
        return _dispatch(args)
    except USER_ERRORS as e:
        LOGGER.error(str(e))
        return 2
    except OSError as e:   # unwritable or full folders, unreadable files: which file, in which folder
        LOGGER.error(describe_os_error(e, folders))
        return 2
    except SystemExit as e:   # a plugin's or protocol's sys.exit(0) is not a successful run
        if e.code not in (0, None):
            raise             # a failing exit stays one (submitit's requeue exits this way)
        LOGGER.error(f"something called sys.exit({e.code!r}) while running `{args.command}` "
                     "(a plugin or a user's encoder?); stopped, finished records are kept")
        return 2
    except Terminated:
        print("repeval: terminated (SIGTERM); finished records are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("repeval: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130
    finally:
        if ours:
            signal.signal(signal.SIGTERM, previous)


def _folders(args) -> dict[str, Path]:
    """The folders a command writes to (results and work for ``run``, ``table`` and ``status``)."""
    return {"results": Path(getattr(args, "results", None) or "results"),
            "work": Path(getattr(args, "workdir", None) or ".repeval")}


def _dispatch(args) -> int:
    load_builtins()
    register_from_args(args)
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
