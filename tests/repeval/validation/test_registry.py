"""The check registry (repeval/validation/registry.py): a new check is one new file, loaded the way
`repeval --plugin FILE validate` loads it."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

import pytest

from repeval.plugin.loader import load_plugin
from repeval.registry import RegistryError
from repeval.validation import CHECKS, Check, check_names, cmd_validate, quick_config, register_check

pytestmark = pytest.mark.usefixtures("one_thread")


NEW_CHECK = '''
from dataclasses import dataclass

import torch

from repeval.report.figures import plt, save_png
from repeval.seeding import generator
from repeval.validation import Check, Verdict, register_check


@dataclass(frozen=True)
class CoinSettings:
    n: int = 4000
    tol: float = 0.05


@register_check("coin", order=99)
class Coin(Check):
    """The mean of fair coin flips is 1/2."""
    Settings = CoinSettings
    quick = {"n": 1000}
    columns = {"n": "flips", "mean": "fraction of heads", "truth": "1/2"}

    def measure(self, cfg, s, device, log):
        flips = torch.randint(0, 2, (s.n,), generator=generator(cfg.seed)).float()
        return [{"n": s.n, "mean": float(flips.mean()), "truth": 0.5}], {}

    def judge(self, cfg, s, rows, info):
        err = abs(rows[0]["mean"] - 0.5)
        return [Verdict("coin", "mean", err <= s.tol, f"|mean - 1/2| <= {s.tol}", f"error {err:.4f}")], ["fair coin"]

    def plot(self, res, out):
        fig, ax = plt.subplots()
        ax.bar([0], [res.rows[0]["mean"]])
        return [save_png(fig, out / "coin.png")]
'''


@pytest.fixture
def coin_check(tmp_path):
    """A new check written as one file and loaded the way `repeval --plugin FILE validate` loads it."""
    path = tmp_path / "coin_check.py"
    path.write_text(textwrap.dedent(NEW_CHECK))
    before = set(sys.modules)
    load_plugin(path)
    yield path
    CHECKS.unregister("coin")
    for m in set(sys.modules) - before:   # the plugin's module only: the built-in checks the test imported stay
        if m.startswith("repeval_plugin_"):
            del sys.modules[m]


def test_a_new_check_is_one_new_file(coin_check, tmp_path, capsys):
    assert check_names()[-1] == "coin"                          # `repeval validate` would run it last
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path / "out", quiet=True)
    assert cmd_validate(args, config=quick_config(checks=("coin",))) == 0
    out = tmp_path / "out" / "quick"
    assert "PASS  coin" in capsys.readouterr().out
    for name in ("coin.csv", "coin.md", "coin.png", "summary.md", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    js = json.loads((out / "summary.json").read_text())
    assert js["config"]["settings"] == {"coin": {"n": 1000, "tol": 0.05}}    # its quick budget
    assert js["checks"]["coin"]["rows"][0]["n"] == 1000 and js["checks"]["coin"]["notes"] == ["fair coin"]
    assert "`mean`: fraction of heads" in (out / "coin.md").read_text()
    assert cmd_validate(args, config=quick_config(checks=("coin",), coin={"tol": -1.0})) == 1
    assert "FAIL  coin/mean" in (out / "summary.md").read_text()
    with pytest.raises(RegistryError, match="duplicate check name 'coin'"):
        register_check("coin")(type("Other", (Check,), {}))


def test_a_plugin_check_runs_in_worker_processes(coin_check, tmp_path):
    """`repeval --plugin FILE validate --jobs 2`: the spawned workers load the plugin file too."""
    args = argparse.Namespace(quick=True, device="cpu", out=tmp_path / "out", quiet=True, jobs=2,
                              plugin=[str(coin_check)])
    assert cmd_validate(args, config=quick_config(checks=("coin", "ssim"), ssim={"images": 2})) == 0
    js = json.loads((tmp_path / "out" / "quick" / "summary.json").read_text())
    assert js["jobs"] == 2 and js["checks"]["coin"]["rows"][0]["n"] == 1000 and js["checks"]["ssim"]["passed"]
