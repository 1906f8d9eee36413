"""``--plugin path/to/file.py``: run a user's file that registers encoders or protocols."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from ..config import ConfigError


class PluginError(RuntimeError):
    pass


def load_plugin(path: str | Path) -> None:
    p = Path(path)
    if not p.is_file():
        raise PluginError(f"plugin file not found: {p}")
    mod_name = f"repeval_plugin_{p.stem}_{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:   # sys.exit(0) in a plugin must not end the run with success
        del sys.modules[mod_name]
        raise PluginError(f"plugin {p} called sys.exit({e.code!r}) while loading") from None
    except Exception as e:
        del sys.modules[mod_name]
        raise PluginError(f"plugin {p} failed to load: {type(e).__name__}: {e}") from None


def register_plugins(plugins=(), pretrained=(), backbones=(), download: bool = False) -> None:
    """``--plugin`` files, ``--pretrained`` checkpoints and ``--backbone`` models, in that order."""
    from ..estimators.nets import SharedEncoder
    from .backbones import parse_backbone_arg
    from .zoo import register_backbone_spec, register_encoder

    for path in plugins:
        load_plugin(path)
    for item in pretrained:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--pretrained expects NAME=PATH, got {item!r}")
        register_encoder(name, SharedEncoder, checkpoint=path, source="pretrained", origin=f"--pretrained {item}")
    for item in backbones:
        name, spec, display = parse_backbone_arg(item, download=download)
        register_backbone_spec(name, spec, display, origin=f"--backbone {item}")
