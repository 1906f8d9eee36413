"""Name registries (repeval/registry.py): an unknown name lists the valid ones, a duplicate names both
definitions."""
import pytest

from repeval.cli import main
from repeval.registry import MODELS, PROTOCOLS, Registry, RegistryError


def test_unknown_name_lists_valid_names():
    reg = Registry("widget")
    reg.register("a", 1)
    reg.register("b", 2)
    with pytest.raises(RegistryError) as e:
        reg.get("c")
    assert str(e.value) == "unknown widget 'c'; valid widgets: a, b"


def test_duplicate_name_names_both_definitions():
    reg = Registry("widget")

    def first():
        pass

    def second():
        pass

    reg.register("x", first)
    with pytest.raises(RegistryError) as e:
        reg.register("x", second)
    msg = str(e.value)
    assert "duplicate widget name 'x'" in msg and msg.count("test_registry.py:") == 2


def test_decorator_registers():
    reg = Registry("thing")

    @reg.register("f")
    def f():
        return 3

    assert reg.get("f")() == 3 and reg.names() == ["f"]


def test_builtins_registered():
    assert {"ae", "random"} <= set(MODELS.names())
    assert "mlp" in PROTOCOLS


def test_cli_unknown_model_exits_nonzero_with_one_line(capsys):
    assert main(["run", "--models", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'nosuch'" in err[0] and "ae" in err[0]
