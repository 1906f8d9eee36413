"""Progress bars (tqdm) that stay quiet when stderr is not a terminal or with --quiet."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def log(msg: str, quiet: bool = False) -> None:
    if not quiet or msg.startswith("error"):
        print(msg, file=sys.stderr, flush=True)


class Progress:
    def __init__(self, quiet: bool = False):
        self.disable = quiet or not sys.stderr.isatty()

    def bar(self, **kw) -> tqdm:
        return tqdm(disable=self.disable, leave=False, dynamic_ncols=True, **kw)

    def iter(self, it, **kw):
        return tqdm(it, disable=self.disable, leave=False, dynamic_ncols=True, **kw)
