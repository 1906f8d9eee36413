"""Settings of `repeval validate` (repeval/validation/config.py): strict, budgets from the checks."""
from __future__ import annotations

import pytest

from repeval.config import ConfigError
from repeval.registry import RegistryError
from repeval.validation import full_config, quick_config
from tests.helpers import VALIDATION_CHECKS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_is_strict_and_budgets_come_from_the_checks():
    assert full_config().checks[:len(VALIDATION_CHECKS)] == VALIDATION_CHECKS
    q, f = quick_config(), full_config()
    assert q.of("ndm").steps == 200 and f.of("ndm").steps == 800 and q.mine.steps == 400 and f.mine.steps == 2000
    assert q.mine.folds == 1 and f.mine.folds == 2
    assert quick_config(ndm={"steps": 7}).of("ndm").steps == 7
    with pytest.raises(ConfigError, match="bogus"):
        quick_config(bogus={})
    with pytest.raises(ConfigError, match="validate.ssim.bogus"):
        quick_config(ssim={"bogus": 1})
    with pytest.raises(ConfigError, match="one entry per task"):
        quick_config(student_t={"dims": (1, 2)})
    with pytest.raises(RegistryError, match="unknown check 'nope'"):
        quick_config(checks=("nope",))
