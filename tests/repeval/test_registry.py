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


@pytest.mark.parametrize("argv, words", [
    (["run", "--models", "dim-l-infonse"], ["unknown model 'dim-l-infonse' (did you mean 'dim-l-infonce'?)",
                                            "--plugin FILE.py", "--backbone NAME="]),
    (["run", "--models", "ae", "--protocols", "mpl"], ["unknown protocol 'mpl' (did you mean 'mlp'?)"]),
    (["run", "--models", "ae", "--set", "trian.epochs=1"], ["bad config section 'trian' (did you mean 'train'?)"]),
    (["run", "--models", "ae", "--set", "train.epoch=1"], ["bad config key 'train.epoch' (did you mean 'epochs'?)"]),
    (["run", "--models", "ae", "--preset", "quik"], ["unknown preset 'quik' (did you mean 'quick'?)"]),
    (["run", "--models", "ae", "--dataset", "digit", "--no-table"],
     ["unknown dataset 'digit' (did you mean 'digits'?)", "npz:DIR, imagefolder:DIR"]),
])
def test_unknown_names_suggest_the_closest_valid_one(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words), err


def test_no_suggestion_when_nothing_is_close():
    reg = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(RegistryError, match=r"^unknown widget 'zzz'; valid widgets: alpha$"):
        reg.get("zzz")


def test_version(capsys):
    import repeval

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"repeval {repeval.__version__}\n"


def test_discovery_imports_a_package_and_loads_its_entry_point_group(monkeypatch):
    """One mechanism finds built-ins (a package scan) and installed packages' plugins (entry points);
    a broken entry point is a one-line RegistryError naming it."""
    from types import SimpleNamespace

    from repeval import registry

    loaded = []
    good = SimpleNamespace(name="mine", value="my_pkg.families", load=lambda: loaded.append("mine"))
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [good] if group == "repeval.families" else [])
    registry.discover("repeval.models", "repeval.families")
    assert loaded == ["mine"] and "dim-g" in registry.MODELS

    def broken():
        raise ImportError("no module named my_pkg")
    bad = SimpleNamespace(name="bad", value="my_pkg.bad", load=broken)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [bad])
    with pytest.raises(RegistryError, match=r"entry point 'bad = my_pkg.bad' \(group repeval.protocols\) failed"):
        registry.discover("repeval.protocols", "repeval.protocols")
