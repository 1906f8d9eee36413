"""One result record per (model, dataset, protocol, tap, seed, epoch), and where it lives.

A :class:`Record` is validated whenever it is read: its schema version, every field's type, that its
``config_hash`` is the hash of its ``config`` (the record's identity) and that its metrics match the
checksum written with them. An invalid record is reported in one line, ignored by the tables and
recomputed by ``repeval run``. :class:`ResultsLayout` owns every path under ``results/<dataset>/``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import config_hash
from .storage import atomic_write_json, not_regular, read_json

SCHEMA = 2
LINK_NOTE = "a symbolic link (records are neither read nor written through links under records/)"
IDENTITY_FIELDS = ("model", "dataset", "protocol", "tap", "seed", "epoch")   # each also inside ``config``


class RecordError(ValueError):
    """A record file that cannot be trusted (unreadable, wrong schema or types, checksum mismatch)."""


def metrics_checksum(metrics: dict) -> str:
    blob = json.dumps(metrics, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SCALAR = (int, float, str, bool, type(None))


def _metric_ok(v: Any) -> bool:
    if isinstance(v, list):
        return all(_metric_ok(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _metric_ok(x) for k, x in v.items())
    return isinstance(v, _SCALAR)


@dataclass(frozen=True)
class Record:
    model: str
    display: str
    dataset: str
    protocol: str
    tap: str
    seed: int
    epoch: int
    success: bool
    metrics: dict
    config: dict                      # the identity: everything that can change the numbers
    config_hash: str
    encoder_hash: str
    error: str | None = None
    dataset_note: str = ""
    paper_comparable: bool = False    # the genuine dataset the paper used (checked by content)
    preset: str = ""
    history: list = field(default_factory=list)   # per-epoch mean training losses up to ``epoch``
    timing_s: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    spectrum: dict = field(default_factory=dict)  # the tap's test features (repeval.estimators.spectrum); diagnostic, not identity
    created: str = ""
    schema: int = SCHEMA

    def to_json(self) -> dict:
        d = asdict(self)
        d["metrics_sha256"] = metrics_checksum(self.metrics)
        return d

    def write(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, obj: Any, where: str | Path = "record") -> "Record":
        """Validate ``obj`` (a parsed JSON file) and build the record; :class:`RecordError` otherwise."""
        if not isinstance(obj, dict):
            raise RecordError(f"{where}: not a record (a JSON {type(obj).__name__}, expected an object)")
        if obj.get("schema") != SCHEMA:
            raise RecordError(f"{where}: record schema {obj.get('schema')!r}, expected {SCHEMA}")
        kw = {}
        for f in fields(cls):
            if f.name not in obj:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise RecordError(f"{where}: missing field '{f.name}'")
                continue
            kw[f.name] = obj[f.name]
        types = {"model": str, "display": str, "dataset": str, "protocol": str, "tap": str, "seed": int,
                 "epoch": int, "success": bool, "metrics": dict, "config": dict, "config_hash": str,
                 "encoder_hash": str, "dataset_note": str, "paper_comparable": bool, "preset": str, "history": list, "timing_s": dict,
                 "provenance": dict, "spectrum": dict, "created": str}
        for k, t in types.items():
            v = kw.get(k)
            if k in kw and (not isinstance(v, t) or (t is int and isinstance(v, bool))):
                raise RecordError(f"{where}: field '{k}' is {type(v).__name__}, expected {t.__name__}")
        if kw.get("error") is not None and not isinstance(kw["error"], str):
            raise RecordError(f"{where}: field 'error' must be a string or null")
        if not all(isinstance(k, str) and _metric_ok(v) for k, v in kw["metrics"].items()):
            raise RecordError(f"{where}: metrics must map names to numbers, strings or lists of them")
        if obj.get("metrics_sha256") != metrics_checksum(kw["metrics"]):
            raise RecordError(f"{where}: metrics do not match their checksum (edited or corrupted)")
        if config_hash(kw["config"]) != kw["config_hash"]:
            raise RecordError(f"{where}: config does not match its config_hash (edited or corrupted)")
        for k in IDENTITY_FIELDS:   # the fields the tables group by are checked against the hashed config
            if kw["config"].get(k) != kw[k]:
                raise RecordError(f"{where}: field '{k}' is {kw[k]!r} but its config says "
                                  f"{kw['config'].get(k)!r} (edited or corrupted)")
        if kw["success"] != (bool(kw["metrics"]) and kw.get("error") is None):   # metrics are checksummed
            raise RecordError(f"{where}: success is {kw['success']} but the record has "
                              f"{'metrics' if kw['metrics'] else 'no metrics'} and "
                              f"{'an error' if kw.get('error') is not None else 'no error'} (edited or corrupted)")
        return cls(**kw)

    @classmethod
    def read(cls, path: str | Path) -> "Record":
        """Read and validate a record file (a regular file of bounded size, never through a link)."""
        try:
            obj = read_json(path)
        except OSError as e:
            raise RecordError(f"{path}: unreadable record ({e.strerror or e})") from None
        except ValueError as e:
            raise RecordError(f"{path}: unreadable record ({type(e).__name__}: {e})") from None
        return cls.from_json(obj, path)


def train_seed(config: dict) -> int:
    """The training seed of the encoder in a record's identity ``config``: ``encoder.train.seed`` for
    a trained family, ``encoder.seed`` for a seeded initialisation (the random-init floor), 0 for a
    loaded encoder."""
    enc = config.get("encoder") or {}
    seed = (enc.get("train") or {}).get("seed", enc.get("seed", 0))
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


@dataclass(frozen=True)
class ResultsLayout:
    """Every path under ``results/<dataset>/``."""

    results: Path
    dataset: str

    @property
    def root(self) -> Path:
        return Path(self.results) / self.dataset

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def record(self, model: str, protocol: str, tap: str, seed: int, epoch: int, train_seed: int = 0) -> Path:
        """A record's file: ``<model>/<protocol>/<tap>[-train<T>]-seed<S>-epoch<E>.json``; the encoder's
        training seed T is in the name when it is not 0 (so two trained encoders of one model coexist)."""
        train = f"-train{train_seed}" if train_seed else ""
        return self.records_dir / model / protocol / f"{tap}{train}-seed{seed}-epoch{epoch}.json"

    def artifact_stem(self, protocol: str, model: str, seed: int, epoch: int | None = None) -> Path:
        """Where a protocol may write figures (e.g. ``recon/<model>.png``): seed 0 of the run's last
        epoch gets the plain model name, other seeds and earlier epochs a suffix."""
        name = model + (f"-seed{seed}" if seed else "") + (f"-epoch{epoch}" if epoch is not None else "")
        return self.root / protocol / name

    def table(self, name: str) -> Path:
        return self.root / name

    def record_files(self) -> list[Path]:
        """Every regular ``*.json`` file under ``records/`` reached without a symbolic link."""
        return [p for p, why in walk_records(self.records_dir) if why is None]

    def check_location(self, path: Path, rec: Record) -> None:
        """A record counts only at the path its own identity dictates (:meth:`record`)."""
        want = self.record(rec.model, rec.protocol, rec.tap, rec.seed, rec.epoch, train_seed(rec.config))
        if rec.dataset != self.dataset or Path(path) != want:
            raise RecordError(f"{path}: a record of {rec.dataset}/{rec.model}/{rec.protocol}/{rec.tap}/seed{rec.seed}/"
                              f"epoch{rec.epoch} belongs at {want} (a stray copy or a moved file)")

    def read_record(self, path: Path) -> Record:
        """The valid record at ``path``, checked to be at its own path; :class:`RecordError` otherwise."""
        rec = Record.read(path)
        self.check_location(path, rec)
        return rec

    def scan(self, model: str | None = None) -> tuple[dict[Path, Record], list[str]]:
        """The one walk over ``records/`` (or ``records/<model>/``) that both ``repeval run`` and
        ``repeval table`` use: path -> valid record, and one line per file that does not count
        (invalid, misplaced, a link, not a regular file)."""
        top = self.records_dir if model is None else self.records_dir / model
        good, problems = {}, []
        if model is not None and top.is_symlink():
            return good, [f"{top}: {LINK_NOTE}"]
        for p, why in walk_records(top):
            if why is not None:
                problems.append(f"{p}: {why}")
                continue
            try:
                good[p] = self.read_record(p)
            except RecordError as e:
                problems.append(str(e))
        return good, problems

    def read_records(self, on_invalid=None) -> list[Record]:
        """Every valid record of this dataset; ``on_invalid(RecordError)`` is called for the others."""
        good, problems = self.scan()
        for line in problems:
            if on_invalid:
                on_invalid(RecordError(line))
        return list(good.values())

    def link_in(self, path: Path) -> Path | None:
        """The first folder below ``records/`` on the way to ``path`` that is a symbolic link, or
        None: records are neither read nor written through links (``records/`` itself may be one)."""
        p = Path(path)
        for q in reversed([q for q in p.parents if self.records_dir in q.parents]):
            if q.is_symlink():
                return q
        return None


def walk_records(top: Path):
    """``(path, None)`` for every regular ``*.json`` file under ``top``, in sorted path order, and
    ``(path, why)`` for every entry below ``top`` that is not counted: a symbolic link (file or
    folder: never followed; ``top`` itself is), or a ``*.json`` that is not a regular file (FIFO,
    device, socket, folder). Other folders are descended; other files (figures) are passed over."""
    if Path(top).is_dir():
        yield from _walk(Path(top))


def _walk(folder: Path):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        yield folder, f"unreadable folder ({e.strerror})"
        return
    for e in entries:
        p = Path(e.path)
        if e.is_symlink():
            yield p, LINK_NOTE
        elif e.is_dir(follow_symlinks=False):
            if e.name.endswith(".json"):
                yield p, "a directory, not a record file"
            else:
                yield from _walk(p)
        elif e.name.endswith(".json"):
            yield (p, None) if e.is_file(follow_symlinks=False) else (p, f"{not_regular(p)}, not a record file")
