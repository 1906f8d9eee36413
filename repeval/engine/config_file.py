"""``repeval run --config FILE.toml``: read back exactly what ``repeval config`` prints.

The file is TOML: an optional top-level ``preset = "NAME"`` and one table per config section
(``[train]``, ``[mlp]``, ``[dim]``, a family's model-specific ``[dim.dim-g]``), each key a field of
that section's frozen config. Its values become overrides like ``--set`` ones (``--set`` wins per
key), so they are checked, resolved and recorded in every record's config exactly the same way.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..config import ConfigError

TOP_LEVEL = ("preset",)


def overrides_from_toml(data: dict[str, Any], where: str) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Parsed TOML -> (preset or None, section -> {key: value}); a nested table ``[a.b]`` is section
    ``a.b`` (a family's model-specific section). Pure: ``where`` names the file in errors."""
    preset = None
    out: dict[str, dict[str, Any]] = {}

    def walk(name: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            if isinstance(v, dict):
                walk(f"{name}.{k}", v)
            else:
                out.setdefault(name, {})[k] = v

    for k, v in data.items():
        if isinstance(v, dict):
            walk(k, v)
        elif k == "preset" and isinstance(v, str):
            preset = v
        else:
            raise ConfigError(f"{where}: top-level key '{k}' is not a [section]; top-level keys: "
                              f"{', '.join(TOP_LEVEL)} (a string)")
    return preset, out


def read_config_file(path: str | Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Read ``path`` (one-line ConfigError when it is missing or not TOML)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: cannot read {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {p}: not valid TOML: {e}") from None
    return overrides_from_toml(data, f"--config {p}")
