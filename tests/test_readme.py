"""The README is executable truth: every code block marked ``offline`` (fence info ``bash offline`` or
``python offline``) runs, in README order, in an empty folder, on the embedded digits data.

Budgets: the ``quick`` preset is replaced, for this test only, by :data:`TINY` (same sections, a
few steps each), so the blocks take about a minute on 2 cores; the commands are run in this process
(``repeval.cli.main``) so torch is imported once. A ``python offline file=NAME`` block is written to
NAME (a plugin the next block loads); any other ``python offline`` block is executed. A bash line
is ``repeval ARGS [> FILE]`` or ``python -c CODE``. The two set-up commands are not run.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from repeval.cli import main
from repeval.engine.presets import PRESETS, Preset
from repeval.registry import MODELS

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^ *```(\w+)([^\n]*)\n(.*?)^ *```", re.M | re.S)
TINY = Preset("quick", "README test budgets", "digits", {
    "train": {"epochs": 1, "max_train": 128},
    "dim": {"critic_units": 64},
    "mlp": {"epochs": 2},
    "svm": {"epochs": 1, "min_steps": 1, "c_grid": (0.1,), "max_cycles": 1},
    "recon": {"epochs": 1, "width": 16, "max_train": 128},
    "mine": {"steps": 40, "eval_every": 5, "batch_size": 64,
             "conv_channels": (8, 8, 8), "max_train": 256, "max_eval": 256},
    "ndm": {"steps": 40, "eval_every": 5, "batch_size": 64, "max_eval": 256},
    "knn": {"k": (5, 20)},
    "linear": {"weight_decays": (1e-2,), "max_iter": 10}})


def blocks() -> list[tuple[str, list[str], str]]:
    """(language, info words, code) of every fenced block of the README, in order."""
    return [(m[1], m[2].split(), m[3]) for m in FENCE.finditer(README.read_text(encoding="utf-8"))]


def commands(code: str) -> list[list[str]]:
    """A bash block's lines (``\\`` continuations joined, ``#`` comments dropped) as argv lists."""
    return [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()
            if shlex.split(line, comments=True)]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working folder, TINY in place of the quick preset, the user-registered models of
    other tests set aside (and this test's removed afterwards)."""
    monkeypatch.chdir(tmp_path)
    presets, models = dict(PRESETS._items), dict(MODELS._items)
    PRESETS._items["quick"] = TINY
    for name, spec in models.items():
        if spec.source != "repeval":
            MODELS.unregister(name)
    yield tmp_path
    PRESETS._items.clear()
    PRESETS._items.update(presets)
    MODELS._items.clear()
    MODELS._items.update(models)


def run_bash(code: str, capsys) -> list[str]:
    """Run each command of a bash block; returns the stdout of each ``repeval`` command."""
    outs = []
    for argv in commands(code):
        if argv[:2] == ["python", "-c"]:
            exec(compile(argv[2], "README python -c", "exec"), {})
            continue
        assert argv[0] == "repeval", f"README offline block runs {argv[0]!r}, which this test cannot run"
        redirect = argv.index(">") if ">" in argv else None
        rc = main(argv[1:redirect])
        out, err = capsys.readouterr()
        assert rc == 0, f"{shlex.join(argv)} exited {rc}: {err.strip().splitlines()[-1:]}"
        if redirect is not None:
            Path(argv[redirect + 1]).write_text(out)
        outs.append(out)
    return outs


def test_setup_has_exactly_two_commands():
    setup = README.read_text(encoding="utf-8").split("## Set up")[1].split("\n## ")[0]
    cmds = [c for m in FENCE.finditer(setup) for c in commands(m[3])]
    assert len(cmds) == 2 and all(c[:2] == ["pip", "install"] for c in cmds)


def test_names_the_readme_uses_are_exported():
    import repeval

    used = set(re.findall(r"\brepeval\.(\w+)\(", README.read_text(encoding="utf-8")))
    assert {"register_backbone", "register_encoder"} <= used
    assert [n for n in sorted(used) if not hasattr(repeval, n)] == []
    assert {"register_model", "Family", "register_backbone"} <= set(repeval.__all__)


def test_every_offline_block_runs(sandbox, capsys):
    offline = [b for b in blocks() if "offline" in b[1]]
    assert len(offline) >= 6, "the README lost its offline markers"
    outputs: dict[str, str] = {}
    for lang, info, code in offline:
        target = next((w.split("=", 1)[1] for w in info if w.startswith("file=")), None)
        if lang == "python" and target:
            Path(target).write_text(code)
        elif lang == "python":
            exec(compile(code, "README python block", "exec"), {})
        else:
            assert lang == "bash", lang
            for argv, out in zip([c for c in commands(code) if c[0] == "repeval"], run_bash(code, capsys)):
                outputs[shlex.join(argv)] = out
    # the backbone example ends with a table row of numbers; a plugin's extra tap is in a table
    backbone = next(out for cmd, out in outputs.items() if "--backbone r18=" in cmd)
    last_row = [ln for ln in backbone.splitlines() if ln.startswith("|")][-1]
    assert re.fullmatch(r"\| r18 / layer4 +\| +\d+\.\d\d ± \d+\.\d\d\S* \|", last_row), last_row
    plugin = next(out for cmd, out in outputs.items() if "--plugin my_encoders.py" in cmd)
    assert re.search(r"\| My encoder / emb +\| +\d+\.\d\d", plugin), plugin
    mapped = next(out for cmd, out in outputs.items() if "taps=layer3:conv" in cmd)
    assert re.search(r"## Table 1.*\n\n.*\n.*\n\| r18p +\| +\d+\.\d\d", mapped), mapped
    assert (sandbox / "results" / "digits" / "tableT.md").is_file()
    assert {"r18", "r18-224", "my-encoder"} <= set(MODELS.names())       # the Python block registered them
