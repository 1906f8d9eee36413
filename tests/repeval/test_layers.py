"""The import graph, read from the source with ``ast`` (every import statement, those inside functions
included): no module imports one of a higher layer, and no import circle exists.

Layers, bottom to top (README, Architecture): a module may import its own layer and the ones below.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"repeval": ROOT / "repeval", "repeval.models": ROOT / "models", "repeval.protocols": ROOT / "protocols"}

LAYERS = (
    ("core", ("repeval.runtime", "repeval.registry", "repeval.config", "repeval.seeding")),
    ("estimators", ("repeval.estimators",)),
    ("data", ("repeval.data",)),
    ("store", ("repeval.store",)),
    ("plugin contract", ("repeval.plugin",)),
    ("engine", ("repeval.engine",)),
    ("built-in plugins", ("repeval.models", "repeval.protocols")),
    ("report", ("repeval.report",)),
    ("validation", ("repeval.validation",)),
    ("launch", ("repeval.launch",)),
    ("face", ("repeval.cli", "repeval.entry", "repeval.__main__", "repeval")),
)
MAX_ROOT_MODULES = 12


def modules() -> dict[str, Path]:
    """Module name -> file, for repeval and the two folders installed as its subpackages."""
    out = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for f in sorted(folder.rglob("*.py")):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The repeval modules ``name`` imports (the longest known prefix of each imported name)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            targets = [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def layer_of(name: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best[0]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, f, known) for m, f in known.items()}


def test_every_module_has_a_layer_and_imports_none_above_it():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_import_graph_has_no_circle():
    g = graph()
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    circles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(g[m]):
            if state.get(t) == 1:
                circles.append(" -> ".join(path[path.index(t):] + [m, t]))   # t is an ancestor of m
            elif t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert circles == []


def test_the_root_holds_a_handful_of_modules():
    root = sorted(p.name for p in (ROOT / "repeval").glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_the_checker_sees_lazy_imports_and_circles(tmp_path):
    """The graph counts an import inside a function, and the circle search finds a two-module loop."""
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "b.py").write_text("from . import a\n")
    known = {"repeval.a": tmp_path / "a.py", "repeval.b": tmp_path / "b.py"}
    assert imports("repeval.a", known["repeval.a"], known) == {"repeval.b"}
    assert imports("repeval.b", known["repeval.b"], known) == {"repeval.a"}


def test_protocol_configs_meet_the_estimator_cores_typed_options():
    """An estimator core names what it reads (a typing.Protocol); the protocol configs passed to it
    have every one of those fields, with the same type."""
    import dataclasses
    import typing

    from repeval.estimators.mi import MINEOptions, NDMOptions
    from repeval.protocols.mine import MINEConfig
    from repeval.protocols.ndm import NDMConfig

    for options, config in ((MINEOptions, MINEConfig), (NDMOptions, NDMConfig)):
        wanted, have = typing.get_type_hints(options), typing.get_type_hints(config)
        assert {k: have.get(k) for k in wanted} == wanted
        assert set(wanted) <= {f.name for f in dataclasses.fields(config)}
