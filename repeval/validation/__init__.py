"""``repeval validate``: check the benchmark's estimators against distributions with known answers,
with the same estimator code the protocols use (project issue 7).

Built-in checks (one module each under :mod:`repeval.validation.checks`, found through one registry,
:mod:`repeval.validation.registry`): the Gaussian sweep (MINE and DIM's DV / JSD / infoNCE bounds vs
-(d/2) log(1 - rho^2)), invariance under invertible maps, NDM calibration on Gaussian codes of known
total correlation, SSIM / MS-SSIM sanity, and heavy tails (MINE on multivariate Student-t pairs).
Each check prints PASS/FAIL lines against the tolerances stated in its settings; the exit status is
1 when any check fails. Closed forms and samplers: :mod:`repeval.validation.groundtruth`.

Adding a check: one new module in ``repeval/validation/checks/`` (or a user's file loaded with
``repeval --plugin FILE.py validate``)::

    @register_check("mine_new", order=60)
    class MyCheck(Check):
        Settings = MySettings                 # frozen dataclass: budget and tolerances
        quick = {"n_samples": 1000}           # --quick overrides
        columns = {"true_mi": "...", ...}
        def measure(self, cfg, s, device, log): ...  -> (rows, info)
        def judge(self, cfg, s, rows, info): ...     -> (verdicts, notes)
        def plot(self, res, out): ...                -> [png paths]
"""
from .config import MineOptions, ValidateConfig, full_config, quick_config
from .registry import CHECKS, Check, CheckResult, check_names, get_check, register_check
from .run import cmd_validate, rebuild_reports, run_validation
from .verdicts import Verdict

__all__ = ["MineOptions", "ValidateConfig", "full_config", "quick_config", "CHECKS", "Check", "CheckResult",
           "check_names", "get_check", "register_check", "cmd_validate", "rebuild_reports", "run_validation",
           "Verdict"]
