"""The benchmark runner: train or load -> extract taps once -> protocols -> one record each.

Stages per model:
1. build the family with a seeded initialisation; read its tap names from one forward;
2. list the records it owes, one per (protocol, tap, seed); if all exist with the same config
   hash, skip the model entirely (nothing is trained, loaded or extracted);
3. train (resuming from the per-epoch checkpoint) or load the encoder;
4. extract every tap once per (encoder hash, dataset, split) into the feature cache;
5. run each missing protocol record and write it atomically. A failing protocol writes a record
   with ``success: false`` and the run goes on; a diverging model is reported and skipped.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .config import ConfigError, TrainConfig, config_hash, make_config, to_dict
from .data import Dataset
from .features import cached_features, extract, tap_names
from .presets import Preset
from .progress import Progress, log
from .protocol import ProtocolInput, ProtocolSpec, Split, code_tap
from .provenance import provenance
from .registry import MODELS, PROTOCOLS
from .seeding import derive_seed, generator, seed_everything
from .storage import atomic_write_json, read_json, state_dict_hash
from .train import DivergenceError, train
from .zoo import ModelSpec


@dataclass
class RunOptions:
    models: list[str]
    protocols: list[str]
    preset: Preset
    overrides: dict = field(default_factory=dict)   # section -> {key: value} from --set
    seeds: int | None = None                        # None: each protocol's default
    device: str = "cpu"
    workdir: Path = Path(".repeval")
    results: Path = Path("results")
    quiet: bool = False
    on_epoch: Callable | None = None                # (model, epoch, mean losses) after training, e.g. TensorBoardLog


@dataclass
class RunSummary:
    written: list[Path] = field(default_factory=list)
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def record_path(results: Path, dataset: str, model: str, protocol: str, tap: str, seed: int) -> Path:
    return Path(results) / dataset / "records" / model / protocol / f"{tap}-seed{seed}.json"


def resolve_configs(opts: RunOptions) -> tuple[TrainConfig, dict[str, object]]:
    """Validate every section (preset + --set) before anything runs; unknown keys are errors."""
    sections = {k: dict(v) for k, v in opts.preset.sections.items()}
    for sec, kv in opts.overrides.items():
        sections.setdefault(sec, {}).update(kv)
    valid = {"train", *PROTOCOLS.names()}
    for sec in opts.overrides:
        if sec not in valid:
            raise ConfigError(f"bad config section '{sec}'; valid sections: {', '.join(sorted(valid))}")
    train_cfg = make_config(TrainConfig, sections.get("train"), "train")
    proto_cfgs = {}
    for name in opts.protocols:
        spec: ProtocolSpec = PROTOCOLS.get(name)
        proto_cfgs[name] = make_config(spec.config_cls, sections.get(name), name)
    return train_cfg, proto_cfgs


def _model_dir(opts: RunOptions, ds: Dataset, name: str, train_key: str) -> Path:
    return Path(opts.workdir) / "models" / ds.name / f"{name}-{train_key}"


def run(opts: RunOptions, ds: Dataset) -> RunSummary:
    """Run every requested model through every requested protocol on ``ds``."""
    for m in opts.models:
        MODELS.get(m)
    train_cfg, proto_cfgs = resolve_configs(opts)
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    summary = RunSummary()
    prog = Progress(quiet=opts.quiet)
    for name in opts.models:
        try:
            _run_model(name, opts, ds, train_cfg, proto_cfgs, summary, prog)
        except DivergenceError as e:
            msg = f"{name}: training diverged: {e}"
            log(f"error: {msg}; continuing with the next model")
            summary.failures.append(msg)
    return summary


def _run_model(name: str, opts: RunOptions, ds: Dataset, train_cfg: TrainConfig, proto_cfgs: dict,
               summary: RunSummary, prog: Progress) -> None:
    spec: ModelSpec = MODELS.get(name)
    seed_everything(derive_seed(train_cfg.seed, "init", name))
    family = spec.build(train_cfg, ds.n_classes, ds.x_train.shape[1])
    taps = tap_names(family.encoder, ds.x_test[:2], name)
    hp = family.hparams()
    train_part = {"model": name, "train": to_dict(train_cfg) if family.trains else None, "family": hp,
                  "dataset": ds.name, "data_fingerprint": ds.fingerprint}
    train_key = config_hash(train_part)

    todo: list[tuple[ProtocolSpec, str, int, dict, Path]] = []
    for pname, pcfg in proto_cfgs.items():
        pspec: ProtocolSpec = PROTOCOLS.get(pname)
        ptaps = taps if pspec.taps == "all" else [code_tap(taps)]
        for tap in ptaps:
            for seed in range(opts.seeds if opts.seeds is not None else pspec.seeds):
                config = {"preset": opts.preset.name, "model": name, "display": spec.display,
                          "dataset": ds.name, "train": train_part["train"], "family": hp,
                          "train_key": train_key, "protocol": pname, "protocol_config": to_dict(pcfg),
                          "tap": tap, "seed": seed}
                path = record_path(opts.results, ds.name, name, pname, tap, seed)
                if _is_done(path, config_hash(config)):
                    summary.skipped += 1
                    continue
                todo.append((pspec, tap, seed, config, path))
    if not todo:
        log(f"[{name}] all records present: nothing to train, extract or evaluate", opts.quiet)
        return

    device = torch.device(opts.device)
    family.to(device)
    t0 = time.time()
    if family.trains and train_cfg.epochs > 0:
        x_tr, y_tr = _training_subset(ds, train_cfg)
        x_dev, y_dev = x_tr.to(device), y_tr.to(device)
        ckpt = _model_dir(opts, ds, name, train_key) / "train.pt"
        with prog.bar(total=train_cfg.epochs, desc=f"{name} train", unit="epoch") as bar:
            def on_step(epoch, step, steps, losses):
                if step == steps - 1:
                    bar.n = epoch + 1
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:3]}, refresh=True)
                    if prog.disable:  # a log file instead of a terminal: one line per epoch
                        log(f"[{name}] epoch {epoch + 1}/{train_cfg.epochs} "
                            + " ".join(f"{k}={v:.4g}" for k, v in losses.items())
                            + f" ({time.time() - t0:.0f} s)", opts.quiet)
            history = train(family, x_dev, y_dev, ckpt, name=name, progress=on_step)
            bar.n = train_cfg.epochs
        del x_dev, y_dev
        for epoch, losses in enumerate(history if opts.on_epoch else [], 1):
            opts.on_epoch(name, epoch, losses)
    train_s = time.time() - t0
    encoder = family.encoder.eval()
    enc_hash = state_dict_hash(encoder.state_dict())

    t0 = time.time()
    feats = {}
    hits = []
    for split, x in (("train", ds.x_train), ("test", ds.x_test)):
        key = f"{enc_hash}-{ds.name}-{ds.fingerprint}-{split}"
        def compute(x=x, split=split):
            with prog.bar(total=x.shape[0], desc=f"{name} extract {split}", unit="img") as bar:
                return extract(encoder, x, name=name, device=device, progress=lambda n: bar.update(n - bar.n))
        feats[split], hit = cached_features(Path(opts.workdir) / "features", key, compute)
        hits.append(hit)
    extract_s = time.time() - t0
    del family  # free critics/decoders before the protocols

    log(f"[{name}] encoder ready (train {train_s:.0f} s), features {'cached' if all(hits) else 'extracted'} "
        f"({extract_s:.0f} s); {len(todo)} protocol records to run", opts.quiet)
    prov = provenance(opts.device)
    for pspec, tap, seed, config, path in prog.iter(todo, desc=f"{name} protocols", unit="record"):
        imgs = pspec.needs_images
        inp = ProtocolInput(tap,
                            Split(feats["train"][tap], ds.y_train, ds.x_train if imgs else None),
                            Split(feats["test"][tap], ds.y_test, ds.x_test if imgs else None),
                            ds.n_classes, _artifact_stem(opts, ds, name, pspec.name, seed))
        seed_everything(derive_seed(seed, pspec.name, tap))
        t1 = time.time()
        try:
            metrics = pspec.fn(inp, proto_cfgs[pspec.name], seed=seed, device=opts.device)
            metrics = {k: (float(v) if isinstance(v, (int, float)) or torch.is_tensor(v) else v)
                       for k, v in metrics.items()}
            ok, err = True, None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # a protocol failure is recorded, the run goes on
            metrics, ok = {}, False
            err = f"{type(e).__name__}: {e}"
            log(f"error: [{name}] {pspec.name} on {tap} (seed {seed}) failed: {err}")
            if not opts.quiet:
                traceback.print_exc(limit=3, file=sys.stderr)
            summary.failures.append(f"{name}/{pspec.name}/{tap}/seed{seed}: {err}")
        record = {"model": name, "display": config["display"], "dataset": ds.name,
                  "dataset_note": ds.note, "protocol": pspec.name, "tap": tap, "seed": seed,
                  "success": ok, "error": err, "metrics": metrics, "config": config,
                  "config_hash": config_hash(config), "encoder_hash": enc_hash,
                  "timing_s": {"protocol": round(time.time() - t1, 3), "train": round(train_s, 3),
                               "extract": round(extract_s, 3), "features_cached": all(hits)},
                  "provenance": prov, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(path, record)
        if ok:
            log(f"[{name}] {pspec.name}/{tap}/seed{seed}: "
                + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
                + f" ({record['timing_s']['protocol']:.0f} s)", opts.quiet)
        summary.written.append(path)


def _artifact_stem(opts: RunOptions, ds: Dataset, model: str, protocol: str, seed: int) -> Path:
    return Path(opts.results) / ds.name / protocol / (model if seed == 0 else f"{model}-seed{seed}")


def _is_done(path: Path, chash: str) -> bool:
    if not path.exists():
        return False
    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return False
    return bool(rec.get("success")) and rec.get("config_hash") == chash


def _training_subset(ds: Dataset, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if not cfg.max_train or cfg.max_train >= ds.x_train.shape[0]:
        return ds.x_train, ds.y_train
    idx = torch.randperm(ds.x_train.shape[0], generator=generator(derive_seed(cfg.seed, "subset")))[:cfg.max_train]
    return ds.x_train[idx], ds.y_train[idx]
