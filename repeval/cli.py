"""Command line: ``repeval run | list | table | validate``.

Bad input (unknown name, bad config key, missing data, corrupt checkpoint, a user's encoder with the
wrong outputs) ends with one line on stderr saying what and where, and a non-zero exit; records
already written stay.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import load_builtins
from .config import ConfigError, parse_overrides
from .data import DataError, dataset_names, load_dataset
from .features import EncoderContractError
from .plugins import PluginError, load_plugin
from .presets import PRESETS
from .registry import MODELS, PROTOCOLS, RegistryError
from .records import RecordError
from .storage import CheckpointError

USER_ERRORS = (RegistryError, ConfigError, DataError, PluginError, CheckpointError, EncoderContractError,
               RecordError)


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repeval", description=__doc__.splitlines()[0])
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="a Python file that registers encoders/protocols (repeatable)")
    p.add_argument("--pretrained", action="append", default=[], metavar="NAME=PATH",
                   help="register a shared-encoder state dict as model NAME (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train/load encoders, extract features, run protocols, write records")
    r.add_argument("--models", nargs="+", help="model names, space or comma separated (default: all)")
    r.add_argument("--protocols", nargs="+", help="protocol names (default: all)")
    r.add_argument("--dataset", help="digits | cifar10 | cifar100 | npz:DIR (default: the preset's)")
    r.add_argument("--preset", default="quick", help="budget preset (default: quick)")
    r.add_argument("--seeds", type=int, help="seeds per protocol (default: each protocol's: mlp 3, svm 5, others 1)")
    r.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    r.add_argument("--workdir", default=".repeval", type=Path, help="checkpoints and feature cache")
    r.add_argument("--results", default="results", type=Path, help="where result records go")
    r.add_argument("--data-root", help="folder holding torchvision's CIFAR files "
                                       "(default ~/.cache/repeval/data)")
    r.add_argument("--download", action="store_true", help="allow downloading CIFAR (network)")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. train.epochs=2 or mlp.epochs=5")
    r.add_argument("--quiet", action="store_true", help="no progress bars or info lines")
    r.add_argument("--no-table", action="store_true", help="do not print the tables at the end")
    r.add_argument("--force", action="store_true",
                   help="recompute every requested record, retraining and re-extracting the encoders")
    r.add_argument("--rerun", action="append", default=[], metavar="MODEL[/PROTOCOL]",
                   help="recompute MODEL (retrain, re-extract, re-evaluate) or only its PROTOCOL records")
    r.add_argument("--train-only", action="store_true",
                   help="train the encoders (keeping every evaluation epoch) and evaluate nothing")
    r.add_argument("--dry-run", action="store_true",
                   help="print what would be trained, extracted and evaluated (and what is present); compute nothing")

    sub.add_parser("list", help="show models, protocols, datasets and presets")

    t = sub.add_parser("table", help="regenerate Tables 1, 4 and X and the learning curves from stored records")
    t.add_argument("--dataset", action="append", help="dataset label(s) under results/ (default: all)")
    t.add_argument("--results", default="results", type=Path)
    t.add_argument("--format", default="md,tex,csv", help="comma list of md, tex, csv")
    t.add_argument("--out", type=Path, help="output folder (default: results/<dataset>/)")
    t.add_argument("--no-plots", action="store_true")
    t.add_argument("--epoch", type=int, help="encoder training epoch of the tables (default: each model's last)")

    v = sub.add_parser("validate", help="check the MI/NDM/SSIM estimators against closed forms")
    v.add_argument("--quick", action="store_true")
    v.add_argument("--device", default="cpu")
    v.add_argument("--out", default=Path("results/validation"), type=Path)
    v.add_argument("--quiet", action="store_true")
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


def cmd_run(args) -> int:
    from .runner import RunOptions, run

    preset = PRESETS.get(args.preset)
    models = _listarg(args.models) or MODELS.names()
    protocols = _listarg(args.protocols) or PROTOCOLS.names()
    for m in models:
        MODELS.get(m)
    for q in protocols:
        PROTOCOLS.get(q)
    opts = RunOptions(models=models, protocols=protocols, preset=preset,
                      overrides=parse_overrides(args.set), seeds=args.seeds, device=args.device,
                      workdir=args.workdir, results=args.results, quiet=args.quiet, force=args.force,
                      rerun=tuple(_listarg(args.rerun) or ()), dry_run=args.dry_run,
                      train_only=args.train_only)
    from .runner import resolve_configs
    resolve_configs(opts)  # bad keys, values, seeds and devices fail before the dataset is even loaded
    ds = load_dataset(args.dataset or preset.dataset, args.data_root, args.download)
    summary = run(opts, ds)
    if args.dry_run or args.train_only:
        return 1 if summary.failures else 0
    if not args.no_table:
        from .summary import print_summary
        print_summary(args.results, ds.name, models)
    print(f"{len(summary.written)} records written, {summary.skipped} already present, "
          f"{len(summary.failures)} failures", file=sys.stderr)
    return 1 if summary.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(args)
    except USER_ERRORS as e:
        print(f"repeval: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # unwritable or full folders, unreadable files
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"repeval: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except Terminated:
        print("repeval: terminated (SIGTERM); finished records are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("repeval: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(args) -> int:
    load_builtins()
    for path in args.plugin:
        load_plugin(path)
    for item in args.pretrained:
        from .nets import SharedEncoder
        from .zoo import register_encoder
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--pretrained expects NAME=PATH, got {item!r}")
        register_encoder(name, SharedEncoder, checkpoint=path, source="pretrained")
    if args.command == "list":
        return cmd_list()
    if args.command == "run":
        return cmd_run(args)
    if args.command == "table":
        from .tables import cmd_table
        return cmd_table(args)
    if args.command == "validate":
        from .validation import cmd_validate
        return cmd_validate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
