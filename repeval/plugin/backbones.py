"""Any torchvision or timm image model as a frozen repeval encoder (a "backbone").

``torchvision:resnet18`` or ``timm:resnet18``, weights from a local state-dict file (or, only with
``--download``, the library's published weights), and a declared input adaptation:

* channels: 3-channel images as given, 1-channel images repeated to 3;
* range and normalisation: repeval's images are in [-1, 1] (Hjelm et al. 2019's released code: Normalize(0.5, 0.5));
  they are mapped back to [0, 1] and normalised with the mean/std the architecture's published
  weights were trained with (torchvision's weights metadata, timm's ``pretrained_cfg``), or with
  ImageNet's, or not at all;
* size: kept (a 32 px image enters the ImageNet stem as is, so ResNet's last stage is 1x1), or
  resized (bilinear, antialiased) to ``input_size`` pixels square.

Taps are read with torchvision's feature-extraction utility (``create_feature_extractor``, FX
graph nodes by name; timm's wrapper of it for timm models). The default taps are the last stage
and the stage before it (the last stage with a larger feature map), each global-average pooled;
any graph node (``get_graph_node_names``) can be chosen instead. Every setting and the content
hash of the loaded weights are returned by :meth:`BackboneEncoder.describe`, which the zoo records
with every result; a digest of them is a buffer of the encoder, so the feature cache (keyed by the
encoder's state-dict hash) never mixes two adaptations of the same weights.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, make_config
from ..registry import RegistryError, check_name
from ..store.storage import CheckpointError, load_checkpoint, state_dict_hash

SOURCES = ("torchvision", "timm")
NORMALIZE = ("auto", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Top-level containers whose children are the stages (torchvision's VGG/DenseNet/MobileNet/
# EfficientNet/ConvNeXt keep them in ``features``, RegNet in ``trunk_output``).
STAGE_CONTAINERS = ("features", "trunk_output")
POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
HEADS = ("classifier", "fc", "head", "heads")                 # classification heads are not stages


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone and its declared input adaptation; calling it builds the :class:`BackboneEncoder`.

    ``weights``: a local state-dict file, a name of the library's published weights (torchvision:
    ``DEFAULT``, ``IMAGENET1K_V1``...; timm: ``pretrained``) which needs ``download=True``, or None
    for the seeded random initialisation. ``taps``: graph node names, () for the default pair; a
    ``NODE:TAP`` entry names the node's tap (``layer3:conv`` fills Tables 1 and 4's conv column).
    ``input_size``: 0 keeps the images' size. ``normalize``: "auto" (the architecture's published
    weights' mean/std when the library declares them, else none), "imagenet", "none", or a
    ``(mean, std)`` pair of 3-tuples.
    """

    source: str
    arch: str
    weights: str | None = None
    taps: tuple[str, ...] = ()
    input_size: int = 0
    normalize: str | tuple = "auto"
    pool: bool = True
    download: bool = False

    @property
    def name(self) -> str:
        return f"{self.source}:{self.arch}"

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"backbone source must be one of {', '.join(SOURCES)}, got {self.source!r} "
                              f"(expected e.g. torchvision:resnet18)")
        if self.input_size < 0:
            raise ConfigError(f"backbone {self.name}: input_size must be >= 0 (0 keeps the size), "
                              f"got {self.input_size}")
        if isinstance(self.normalize, str):
            if self.normalize not in NORMALIZE:
                raise ConfigError(f"backbone {self.name}: normalize must be one of {', '.join(NORMALIZE)} "
                                  f"or a (mean, std) pair, got {self.normalize!r}")
        else:
            try:
                mean, std = (tuple(float(v) for v in part) for part in self.normalize)
            except (TypeError, ValueError):
                mean, std = (), ()
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ConfigError(f"backbone {self.name}: normalize=(mean, std) needs two 3-tuples with "
                                  f"std > 0, got {self.normalize!r}")
            object.__setattr__(self, "normalize", (mean, std))
        object.__setattr__(self, "taps", tuple(self.taps))
        tap_nodes(self.taps, self.name)   # bad NODE:TAP entries fail at registration

    # -- checks at registration (one-line errors before anything runs) ---------------------------
    def check(self) -> "BackboneSpec":
        """Fail early: the library is installed, the architecture exists, the weights are reachable."""
        if self.source == "timm":
            timm = _import_timm(self.name)
            if not timm.is_model(self.arch):
                raise ConfigError(f"backbone {self.name}: timm has no model {self.arch!r}")
        else:
            import torchvision.models as tvm
            if self.arch not in tvm.list_models():
                raise ConfigError(f"backbone {self.name}: torchvision has no model {self.arch!r} "
                                  f"(torchvision.models.list_models() lists them)")
        if self.weights is None or Path(self.weights).is_file():
            return self
        published = self._published_weights()
        if published is None:
            raise CheckpointError(f"backbone {self.name}: weights file not found: {self.weights}")
        if not self.download:
            raise ConfigError(f"backbone {self.name}: {self.weights!r} is not a local file; fetching "
                              f"{published} needs --download (network)")
        return self

    def _published_weights(self) -> str | None:
        """The library's published weights that ``weights`` names, or None."""
        if self.source == "timm":
            return "timm's pretrained weights" if self.weights in ("pretrained", "DEFAULT") else None
        from torchvision.models import get_model_weights
        try:
            return str(get_model_weights(self.arch)[self.weights])
        except (KeyError, ValueError):
            return None

    # -- building ---------------------------------------------------------------------------------
    def __call__(self) -> "BackboneEncoder":
        model, weights_note = self.check()._load()
        weights_hash = state_dict_hash(model.state_dict())
        mean_std, norm_source = self._mean_std(model)
        probe = self.input_size or 32
        taps = self.taps or default_taps(model, self.source, probe)
        nodes = tap_nodes(taps, self.name)
        body = _feature_extractor(model, nodes, self.name, self.source)
        description = {
            "backbone": self.name, "weights": weights_note, "weights_hash": weights_hash,
            "taps": list(taps),
            "pool": "global average over space (4-D taps)" if self.pool else "none (taps flattened)",
            "input": {
                "channels": "3 as given; 1-channel images repeated to 3",
                "range": "[-1, 1] -> [0, 1]",
                "normalize": (None if mean_std is None else
                              {"mean": list(mean_std[0]), "std": list(mean_std[1]), "source": norm_source}),
                "input_size": self.input_size,
                "resize": (f"to {self.input_size}x{self.input_size}, bilinear, antialiased" if self.input_size
                           else "none: the network sees the images at their own size (a 32 px image "
                                "leaves an ImageNet ResNet's last stage as a 1x1 map)"),
            },
        }
        return BackboneEncoder(body, tuple(nodes.values()), input_size=self.input_size, mean_std=mean_std, pool=self.pool,
                               description=description)

    def _load(self) -> tuple[nn.Module, str | None]:
        published = None if self.weights is None or Path(self.weights).is_file() else self._published_weights()
        if self.source == "timm":
            model = _import_timm(self.name).create_model(self.arch, pretrained=published is not None)
        else:
            from torchvision.models import get_model, get_model_weights
            model = get_model(self.arch, weights=get_model_weights(self.arch)[self.weights] if published else None)
        if self.weights is not None and published is None:
            load_encoder_weights(model, self.weights)
            return model.eval(), Path(self.weights).name
        return model.eval(), (f"{self.source}:{published}" if published else None)

    def _mean_std(self, model: nn.Module) -> tuple[tuple | None, str | None]:
        if isinstance(self.normalize, tuple):
            return self.normalize, "given"
        if self.normalize == "none":
            return None, None
        if self.normalize == "imagenet":
            return (IMAGENET_MEAN, IMAGENET_STD), "ImageNet"
        if self.source == "timm":
            cfg = getattr(model, "pretrained_cfg", None) or {}
            if cfg.get("mean") and cfg.get("std") and len(cfg["mean"]) == 3:
                return (tuple(cfg["mean"]), tuple(cfg["std"])), f"timm pretrained_cfg of {self.arch}"
            return None, None
        from torchvision.models import get_model_weights
        try:
            w = get_model_weights(self.arch)
            w = w[self.weights] if self._published_weights() else w.DEFAULT
            t = w.transforms()
        except (KeyError, ValueError, AttributeError, TypeError):
            return None, None
        if getattr(t, "mean", None) and getattr(t, "std", None) and len(t.mean) == 3:
            return (tuple(t.mean), tuple(t.std)), f"torchvision {w} metadata"
        return None, None


class BackboneEncoder(nn.Module):
    """Input adaptation -> feature extractor -> taps (pooled, flattened later by the extractor)."""

    def __init__(self, body: nn.Module, taps: tuple[str, ...], *, input_size: int,
                 mean_std: tuple | None, pool: bool, description: dict):
        super().__init__()
        self.body = body
        self.taps = tuple(taps)
        self.input_size = int(input_size)
        self.pool = pool
        self._description = description
        if mean_std is not None:
            self.register_buffer("mean", torch.tensor(mean_std[0]).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(mean_std[1]).view(1, 3, 1, 1), persistent=False)
        else:
            self.mean = self.std = None
        digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).digest()
        self.register_buffer("adaptation_digest", torch.tensor(list(digest), dtype=torch.uint8))

    def describe(self) -> dict:
        """The backbone, its weights (file name and content hash), taps and input adaptation."""
        return json.loads(json.dumps(self._description))

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 1 or 3, H, W) -> the backbone's input, as declared in describe()."""
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ConfigError(f"backbone {self._description['backbone']} takes (N, 1 or 3, H, W) images; "
                              f"got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        x = (x + 1) / 2
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.body(self.adapt(x))
        taps = {}
        for k in self.taps:
            v = out[k]
            if self.pool and v.dim() == 4:
                v = v.mean(dim=(2, 3))
            taps[k] = v.flatten(1) if v.dim() > 2 else v
        return taps


def _import_timm(name: str):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"backbone {name} needs the timm package: pip install 'repeval[timm]'") from None
    return timm


def tap_nodes(taps: tuple[str, ...], name: str) -> dict[str, str]:
    """``("layer3:conv", "layer4")`` -> ``{"layer3": "conv", "layer4": "layer4"}``: graph node -> the
    tap name its records carry. Naming a node ``conv``, ``fc`` or ``y`` puts it in the paper's
    columns of Tables 1 and 4; every tap is in Table T whatever its name."""
    out: dict[str, str] = {}
    for t in taps:
        node, _, tap = (p.strip() for p in str(t).partition(":"))
        tap = tap or node
        try:
            check_name(tap, "tap")
        except RegistryError as e:
            raise ConfigError(f"backbone {name}: {e}") from None
        if not node or node in out or tap in out.values():
            raise ConfigError(f"backbone {name}: taps {list(taps)} need distinct graph nodes and tap names "
                              f"(NODE or NODE:TAP, e.g. layer3:conv)")
        out[node] = tap
    return out


def _feature_extractor(model: nn.Module, nodes: dict[str, str], name: str, source: str) -> nn.Module:
    if source == "timm":
        from timm.models import create_feature_extractor
    else:
        from torchvision.models.feature_extraction import create_feature_extractor
    taps = list(nodes)
    try:
        return create_feature_extractor(model, return_nodes=dict(nodes))
    except (ValueError, KeyError, RuntimeError) as e:
        from torchvision.models.feature_extraction import get_graph_node_names
        nodes = get_graph_node_names(model)[1]
        shown = ", ".join(nodes[-12:])
        raise ConfigError(f"backbone {name}: taps {taps} are not all graph nodes "
                          f"({type(e).__name__}); its last nodes: {shown}") from None


@torch.no_grad()
def default_taps(model: nn.Module, source: str, size: int = 32) -> tuple[str, ...]:
    """The last stage and the stage before it (the last one with a larger map), by module name.

    timm models declare their stages (``feature_info``); for torchvision models the stages are the
    top-level children (or those of ``features`` / ``trunk_output``) whose output is a 4-D feature
    map, pooling layers and classification heads excluded, measured by one forward at ``size`` pixels.
    """
    info = getattr(model, "feature_info", None)
    if source == "timm" and info:
        mods = [f["module"] for f in (info.get_dicts() if hasattr(info, "get_dicts") else info)]
        return tuple(mods[-2:])
    candidates = []
    for name, child in model.named_children():
        if name in STAGE_CONTAINERS and isinstance(child, nn.Sequential):
            candidates += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            candidates.append((name, child))
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
             for n, m in candidates if not isinstance(m, POOLS) and n not in HEADS]
    try:
        model.eval()(torch.zeros(2, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    stages = [n for n, _ in candidates if len(shapes.get(n, ())) == 3]
    if not stages:
        raise ConfigError(f"cannot find 4-D stages in {type(model).__name__}; pass taps=[graph node names]")
    last = stages[-1]
    names = [n for n, _ in candidates]
    tokens = [n for n in names[names.index(last) + 1:] if len(shapes.get(n, ())) == 2]
    if tokens:
        raise ConfigError(f"{type(model).__name__} works on tokens after '{last}' (e.g. '{tokens[-1]}'); "
                          f"pass taps=[graph node names] (get_graph_node_names lists them)")
    c, h, w = shapes[last]
    earlier = ([n for n in stages if shapes[n][1] * shapes[n][2] > h * w]
               or [n for n in stages[:-1] if shapes[n] != shapes[last]])
    return (earlier[-1], last) if earlier else (last,)


# ---------------------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class BackboneOptions:
    """The ``,key=value`` options of ``--backbone NAME=SOURCE:ARCH[:WEIGHTS][,key=value...]``."""

    taps: tuple[str, ...] = field(default=(), metadata={"min_len": 0})   # graph nodes (NODE or NODE:TAP) joined with '+' (none: default)
    input_size: int = 0
    normalize: str = "auto"
    pool: bool = True
    display: str = ""


def split_backbone(text: str, where: str) -> tuple[str, str, str | None]:
    """``"torchvision:resnet18[:WEIGHTS]"`` -> ("torchvision", "resnet18", WEIGHTS or None)."""
    parts = [p.strip() for p in text.split(":", 2)]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: expected SOURCE:ARCH[:WEIGHTS] (e.g. torchvision:resnet18:r18.pt), "
                          f"got {text!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def parse_backbone_arg(text: str, download: bool = False) -> tuple[str, BackboneSpec, str | None]:
    """``r18=torchvision:resnet18:r18.pt,input_size=64,taps=layer3+layer4`` -> (name, spec, display)."""
    name, sep, rest = (s.strip() for s in text.partition("="))
    if not sep or not name:
        raise ConfigError(f"--backbone expects NAME=SOURCE:ARCH[:WEIGHTS][,key=value...] "
                          f"(e.g. r18=torchvision:resnet18:r18.pt), got {text!r}")
    head, *opts = rest.split(",")
    source, arch, weights = split_backbone(head, f"--backbone {name}")
    kv = {}
    for o in opts:
        k, eq, v = (s.strip() for s in o.partition("="))
        if not eq:
            raise ConfigError(f"--backbone {name}: option {o!r} is not key=value")
        kv[k] = v.replace("+", ",") if k == "taps" else v
    o = make_config(BackboneOptions, kv, f"--backbone {name}")
    spec = BackboneSpec(source, arch, weights, taps=o.taps, input_size=o.input_size, normalize=o.normalize,
                        pool=o.pool, download=download)
    return name, spec, o.display or None


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a state dict (optionally nested under 'encoder' or 'state_dict') with a one-line error."""
    state = load_checkpoint(path)
    if isinstance(state, dict):
        for key in ("encoder", "state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds {type(state).__name__}, not a state dict")
    try:
        encoder.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {type(encoder).__name__}: "
                              + " ".join(str(e).split())[:300]) from None
