"""The BiGAN collapse experiment's committed output (``bigan_diagnosis.txt`` beside a dataset's records,
written by ``tests/benchmarks/bigan_diagnosis.py``), parsed so that the report reads its numbers from
the file instead of a person copying them (pure; the file is read, never rewritten).

The file holds comment lines (``#``), the command lines that ran (``$ ...``), a header per variant
(``## <variant>: {settings}``) and one line per evaluated step::

    step  100: PR conv   5.3 fc   4.1 y   2.1 | fc linear probe 33.06% | disc 0.530 enc_gen 9.659 gp 0.000 | 4.14 s/step

(step 0 has no losses; ``grad_cos`` follows ``gp`` in later runs).
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

FILENAME = "bigan_diagnosis.txt"
DIVERGED_LOSS = 100.0   # a loss above this (they start near 1) means the run's losses diverged

_STEP = re.compile(r"step\s+(\d+):\s+PR conv\s+([\d.]+) fc\s+([\d.]+) y\s+([\d.]+) \| fc linear probe ([\d.]+)%"
                   r"(?: \| disc ([\d.eE+-]+) enc_gen ([\d.eE+-]+) gp ([\d.eE+-]+)(?: grad_cos ([\d.eE+-]+))?)?")
_HEAD = re.compile(r"## ([\w-]+): (\{.*\})\s*$")


@dataclass
class Run:
    """One variant's run: its settings and its evaluated steps (step -> values)."""

    variant: str
    settings: dict
    steps: dict[int, dict] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.steps)

    @property
    def diverged(self) -> bool:
        return any(v.get(k, 0.0) > DIVERGED_LOSS for v in self.steps.values() for k in ("disc", "enc_gen"))


@dataclass
class Diagnosis:
    runs: list[Run]
    header: list[str]

    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.runs))

    def run(self, variant: str, step: int | None = None, key: str | None = None) -> Run | None:
        """The run of ``variant`` that evaluated ``step`` (and recorded ``key`` there), the longest first."""
        runs = [r for r in self.runs if r.variant == variant and (step is None or step in r.steps)
                and (key is None or key in r.steps.get(step, {}))]
        return max(runs, key=lambda r: r.last, default=None)

    def at(self, variant: str, step: int, key: str) -> float | None:
        run = self.run(variant, step, key)
        return None if run is None else run.steps[step].get(key)

    def pr(self, variant: str, step: int) -> tuple[float, float, float] | None:
        run = self.run(variant, step)
        return None if run is None else tuple(run.steps[step][f"pr_{t}"] for t in ("conv", "fc", "y"))

    def initial_pr(self) -> tuple[float, float, float] | None:
        return next((self.pr(r.variant, 0) for r in self.runs if 0 in r.steps), None)

    def values(self, key: str, step: int | None = None, diverged: bool = True) -> list[float]:
        """Every value of ``key`` (at ``step`` when given) over all runs (without diverged runs when False)."""
        return [v[key] for r in self.runs if diverged or not r.diverged
                for s, v in sorted(r.steps.items()) if key in v and (step is None or s == step)]

    def stride(self) -> tuple[int, int]:
        """The range of evaluated steps > 0 over all runs (first evaluation, last)."""
        steps = [s for r in self.runs for s in r.steps if s > 0]
        return (min(steps), max(steps)) if steps else (0, 0)

    @property
    def images(self) -> int | None:
        m = next((re.search(r"--images (\d+)", h) for h in self.header if "--images" in h), None)
        return int(m.group(1)) if m else None


def parse(text: str) -> Diagnosis:
    runs: list[Run] = []
    header: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") and not line.startswith("##") or line.startswith("$"):
            header.append(line)
            continue
        if m := _HEAD.match(line):
            try:
                settings = ast.literal_eval(m.group(2))
            except (ValueError, SyntaxError):
                settings = {}
            runs.append(Run(m.group(1), settings))
            continue
        if (m := _STEP.search(line)) and runs:
            vals = [None if g is None else float(g) for g in m.groups()[1:]]
            step = {k: v for k, v in zip(("pr_conv", "pr_fc", "pr_y", "probe", "disc", "enc_gen", "gp", "grad_cos"),
                                         vals) if v is not None and math.isfinite(v)}
            runs[-1].steps[int(m.group(1))] = step
    return Diagnosis([r for r in runs if r.steps], header)


def load(folder: Path) -> Diagnosis | None:
    """The parsed diagnosis beside a dataset's records, or None when the folder has none."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    diag = parse(path.read_text(encoding="utf-8"))
    return diag if diag.runs else None
