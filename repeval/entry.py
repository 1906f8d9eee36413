"""The ``repeval`` console command. Importing torch and the rest takes seconds; a Ctrl-C (or SIGTERM
turned into one) during those imports is one line and exit status 130, like one during a run."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("repeval: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return cli_main(argv)
