"""The command line of one shard, rebuilt from the launcher's parsed arguments.

Every option of ``repeval`` and ``repeval run`` is passed on as the user gave it (so options added to
the CLI later reach the shards without changes here), except the launcher's own
(:data:`repeval.launch.options.LAUNCH_DESTS`), ``--models`` (one model per shard), ``--device``
(the worker's), the table, which the launcher prints once at the end, and ``--rerun`` items of other
models.
"""
from __future__ import annotations

import argparse

from ..config import ConfigError
from .options import LAUNCH_DESTS


def _flag(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _emit(parser: argparse.ArgumentParser, args: argparse.Namespace, skip: set[str]) -> list[str]:
    out: list[str] = []
    for a in parser._actions:
        if not a.option_strings or a.dest in skip or isinstance(a, argparse._HelpAction) \
                or not hasattr(args, a.dest):   # merged elsewhere (options given after the subcommand)
            continue
        value = getattr(args, a.dest)
        if isinstance(a, argparse._CountAction):
            out += [_flag(a)] * (value or 0)
        elif isinstance(a, argparse.BooleanOptionalAction):
            if value is not None and value != a.default:
                out.append(_flag(a) if value else f"--no-{_flag(a)[2:]}")
        elif isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)):
            if value != a.default:
                out.append(_flag(a))
        elif isinstance(a, argparse._AppendAction):
            for v in value or []:
                out += [_flag(a), str(v)]
        elif type(a) is argparse._StoreAction:
            if value is None:
                continue
            if a.nargs in ("+", "*") or isinstance(a.nargs, int):
                out += [_flag(a), *map(str, value)]
            else:
                out += [_flag(a), str(value)]
        else:
            raise ConfigError(f"option {_flag(a)} ({type(a).__name__}) cannot be passed on to the shards")
    return out


def run_subparser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def shard_argv(parser: argparse.ArgumentParser, args: argparse.Namespace, model: str, device: str) -> list[str]:
    """``repeval [global options] run --models MODEL --device DEVICE --no-table [run options]``."""
    args = argparse.Namespace(**vars(args))
    if getattr(args, "rerun", None):   # --rerun MODEL[/PROTOCOL]: only this shard's items
        items = [x.strip() for v in args.rerun for x in v.split(",") if x.strip()]
        args.rerun = [x for x in items if x.partition("/")[0] == model]
    top = _emit(parser, args, set())
    rest = _emit(run_subparser(parser), args, set(LAUNCH_DESTS) | {"models", "device", "no_table"})
    return top + ["run", "--models", model, "--device", device, "--no-table"] + rest
