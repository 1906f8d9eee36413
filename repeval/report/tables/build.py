"""Records -> tidy table frames (one row per cell) and rank agreement with the paper; pure, no I/O
but reading records."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from ...config import config_hash
from ...plugin.protocol import REPORT_TABLES, ReportColumn
from ...registry import MODELS, PROTOCOLS
from ...store.records import ResultsLayout, train_seed
from .scales import on_paper_scale


EM_DASH = "—"
DEGENERATE_MARK = "‡"
FORMATS = ("md", "tex", "csv")


def tap_columns() -> tuple[ReportColumn, ...]:
    """Table T's columns: every reported metric (:attr:`repeval.plugin.protocol.Reporting.metrics`) of every
    registered protocol, in registration order, on whatever tap a record carries; the number format
    is the protocol's own column format for that metric (else two decimals)."""
    cols = []
    for p in PROTOCOLS:
        rep = PROTOCOLS.get(p).report
        for m in rep.metrics:
            fmt = next((c.fmt for c in rep.columns if c.metric == m), ".2f")
            one = len(rep.metrics) == 1
            cols.append(ReportColumn("T", p if one else f"{p}_{m}", p if one else f"{p} {m}", m, None, fmt,
                                     protocol=p))
    return tuple(cols)


@dataclass(frozen=True)
class TableSpec:
    """A table of ``repeval table``. Its columns are not listed here: they are the
    :class:`repeval.plugin.protocol.ReportColumn` s that the registered protocols declare for table ``id``,
    in registration order, so a new protocol's columns appear without an edit to this package.

    ``paper``: the paper's table compared with (its CSV under ``repeval/report/paper/``), None for the extra
    protocols. ``title``: a prefix to the protocols' title phrases. ``notes``: table-level footnotes
    (about the paper's table, not about a protocol). ``per_tap``: one row per (model, tap) and one
    column per reported metric of every protocol (:func:`tap_columns`), whatever the taps are called;
    ``cells`` then replaces the protocols' "Cells" footnotes."""

    id: str
    title: str = ""
    paper: int | None = None
    notes: tuple[str, ...] = ()
    paper_note: str = ""
    row_notes: tuple[tuple[str, str], ...] = ()   # (model, footnote shown when that row is in the table)
    per_tap: bool = False
    cells: str = ""

    @property
    def name(self) -> str:
        return f"table{self.id}"

    @property
    def number(self) -> str:
        return self.id

    @property
    def columns(self) -> tuple[ReportColumn, ...]:
        if self.per_tap:
            return tap_columns()
        return tuple(shown for p in PROTOCOLS for c in PROTOCOLS.get(p).report.columns if c.table == self.id
                     for shown in on_paper_scale(c))

    @property
    def protocols(self) -> frozenset[str]:
        return frozenset(c.protocol for c in self.columns)

    def full_title(self, shown=None) -> str:
        """The title prefix, then the title phrases of the protocols with a column here (of those in
        ``shown`` only, when given), in registration order."""
        if self.per_tap:
            return self.title
        phrases = [PROTOCOLS.get(p).report.title for p in PROTOCOLS if p in self.protocols
                   and (shown is None or p in shown) and PROTOCOLS.get(p).report.title]
        text = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + (phrases[-1] if phrases else "")
        return f"{self.title}: {text}" if self.title and text else (self.title or text)

    def column(self, key: str) -> ReportColumn:
        return next(c for c in self.columns if c.key == key)


TABLE1 = TableSpec("1", paper=1, row_notes=(("supervised", (
    "Fully supervised: the paper's number is the supervised classifier's own test accuracy (its fc column); "
    "ours is the probe of this table trained on the frozen features of the encoder trained with labels "
    "(Hjelm et al. 2019, Sec. 4.2), like every other row."),),))
TABLE4 = TableSpec("4", paper=4, paper_note=" Paper SVM std: over five runs.", notes=(
    "The paper's Table 4 row \"DIM(L)\" does not name its estimator: we compare it with our DIM(L) (infoNCE), "
    "the paper's default estimator.",))
TABLEX = TableSpec("X", title="Extra protocols (not in the paper)")
TABLET = TableSpec("T", title="Every tap of every model", per_tap=True, cells=(
    "each protocol's reported metric(s) (mean over seeds) on the row's tap, whatever the encoder calls it "
    "(a backbone's stages, a plugin's own taps); code-level protocols (recon, mine, ndm) run on one tap per "
    "model (y, else the last), so their other cells are empty. Tables 1, 4 and X show the taps named conv, "
    "fc and y"))
COLUMN_TABLES = (TABLE1, TABLE4, TABLEX)      # columns declared by the protocols (REPORT_TABLES)
TABLES = (*COLUMN_TABLES, TABLET)
SPECS = {t.id: t for t in TABLES}
assert tuple(t.id for t in COLUMN_TABLES) == REPORT_TABLES
CSV_COLUMNS = ["dataset", "paper_dataset", "table", "row", "display", "model", "column", "column_label",
               "protocol", "tap", "metric", "mean", "std", "n", "seeds", "encoders", "train_seeds", "spread",
               "n_failed", "paper", "paper_std", "delta", "floor", "delta_floor", "epoch", "not_converged",
               "degenerate", "stale", "mixed_encoders"]
SPREAD_TRAIN, SPREAD_PROBE = "training seeds", "probe seeds"
FLOOR_MODEL = "random"   # the seeded, untrained shared encoder: the floor every learned row must clear


# ---------------------------------------------------------------------------------------------- records

def load_records(results: Path, dataset: str) -> tuple[list[dict], list[str]]:
    """Every valid record under ``results/<dataset>/records/**.json`` (as dicts) and a list of
    one-line problems: a file that is not a valid :class:`repeval.store.records.Record` (unreadable, wrong
    schema or field types, edited metrics, config not matching its hash) is left out and named."""
    problems: list[str] = []
    recs = ResultsLayout(Path(results), dataset).read_records(on_invalid=lambda e: problems.append(str(e)))
    return [r.to_json() for r in recs], problems


def discover_datasets(results: Path) -> list[str]:
    root = Path(results)
    return sorted(d.name for d in root.iterdir() if (d / "records").is_dir()) if root.is_dir() else []


def record_epoch(rec: dict) -> int:
    """The training epoch of the encoder a record evaluated (0: not trained)."""
    return rec["epoch"]


def record_train_seed(rec: dict) -> int:
    """The training seed of the encoder a record evaluated (:func:`repeval.store.records.train_seed`)."""
    return train_seed(rec.get("config") or {})


def record_flag(rec: dict, key: str) -> bool | None:
    """A boolean diagnostic (``converged``, ``degenerate``) from the record or its metrics (the runner
    stores a protocol's booleans as 1.0 / 0.0); None when absent or not a boolean."""
    v = rec.get(key, (rec.get("metrics") or {}).get(key))
    if isinstance(v, bool):
        return v
    return bool(v) if isinstance(v, (int, float)) and v in (0, 1) else None


def converged_flag(rec: dict, metric: str) -> bool | None:
    """Whether the fit behind ``metric`` converged: ``<metric>_converged`` when the protocol reports
    several fits in one record (NDM: ``ndm_converged``, ``ndm_raw_converged``), else ``converged``."""
    own = record_flag(rec, f"{metric}_converged")
    return own if own is not None else record_flag(rec, "converged")


def at_epoch(records: list[dict], epoch: int | None = None, protocols=None) -> list[dict]:
    """The records (of ``protocols``, all when None) at one training epoch per (dataset, model):
    ``epoch``, or each model's last epoch when None. A model whose records are all at epoch 0 (an
    untrained encoder, e.g. the random-init floor) is kept at 0 whatever ``epoch`` is asked."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if protocols is None or r.get("protocol") in protocols:
            groups[(r.get("dataset"), r["model"])].append(r)
    out = []
    for rs in groups.values():
        epochs = {record_epoch(r) for r in rs}
        want = max(epochs) if epoch is None or epochs == {0} else epoch
        out += [r for r in rs if record_epoch(r) == want]
    return out


def has_epochs(records: list[dict]) -> bool:
    """Whether any record carries an explicit ``epoch`` (written by a runner that evaluates along training)."""
    return any("epoch" in r for r in records)


# ---------------------------------------------------------------------------------------------- build

def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _order_key(table: int | None, model: str, display: str) -> tuple:
    """Rows: the paper's (``table``'s, Table 1's when None) in its order, known extras, then the rest
    alphabetically by display name."""
    order = {n: i for i, n in enumerate(paper.row_order(table or 1))}
    i = order.get(model)
    return (0, i, "") if i is not None else (1, 0, display.casefold())


def _row_label(display: str, tap: str) -> str:
    """A row's label: the model's display name, and its tap in a per-tap table."""
    return f"{display} / {tap}" if tap else display


def _display(model: str, fallback: str) -> str:
    return MODELS.get(model).display if model in MODELS else fallback


def stale(rec: dict) -> bool:
    """Whether a record was computed by another version of its family or protocol than the code's now
    (its numbers stand; `repeval run --rerun` computes them anew)."""
    cfg = rec.get("config") or {}
    proto = rec.get("protocol")
    if proto in PROTOCOLS and cfg.get("protocol_version") != PROTOCOLS.get(proto).version:
        return True
    family = getattr(MODELS.get(rec["model"]).build, "family", None) if rec.get("model") in MODELS else None
    return family is not None and (cfg.get("encoder") or {}).get("version") != family.version


def encoder_key(rec: dict) -> tuple:
    """The trained encoder a record evaluated: (dataset, model, training seed, epoch)."""
    return rec.get("dataset"), rec["model"], record_train_seed(rec), record_epoch(rec)


def mixed_encoders(records: list[dict]) -> set[tuple]:
    """The encoders (:func:`encoder_key`) whose records name more than one set of weights
    (``encoder_hash``): e.g. an encoder retrained after its checkpoint was lost, evaluated by some
    protocols only, so one row would mix two trainings. Their cells are flagged, not averaged apart."""
    hashes: dict[tuple, set] = defaultdict(set)
    for r in records:
        if r.get("encoder_hash"):
            hashes[encoder_key(r)].add(r["encoder_hash"])
    return {k for k, h in hashes.items() if len(h) > 1}


def configuration(rec: dict) -> str:
    """What a cell's records must share: the record's identity but its probe seed, its tap, the
    encoder's training seed (a seeded initialisation's weights follow from its seed) and the code
    versions (an older version is flagged stale, :func:`stale`, not separated)."""
    cfg = {k: v for k, v in (rec.get("config") or {}).items() if k not in ("seed", "tap", "protocol_version")}
    enc = {k: v for k, v in (cfg.get("encoder") or {}).items() if k != "version"}
    if "seed" in enc:
        enc.pop("seed")
        enc.pop("weights", None)
    if isinstance(enc.get("train"), dict):
        enc["train"] = {k: v for k, v in enc["train"].items() if k != "seed"}
    return config_hash({**cfg, "encoder": enc})


def one_configuration(sel: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split a cell's records into those of one configuration (the one with the most successful
    records, then the most records, then the newest) and the others, which are left out, not averaged."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in sel:
        groups[configuration(r)].append(r)
    if len(groups) < 2:
        return sel, []
    best = max(groups.values(), key=lambda g: (sum(bool(r.get("success")) for r in g), len(g),
                                               max(str(r.get("created", "")) for r in g)))
    return best, [r for r in sel if all(r is not b for b in best)]


def cell_records(records, col: ReportColumn) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """The records of one model that fill column ``col``, of one configuration: (all of them, those
    with a finite value, those that failed or hold a non-finite value, those of other configurations
    left out)."""
    sel, other = one_configuration([r for r in records if r["protocol"] == col.protocol
                                    and (col.tap is None or r.get("tap") == col.tap)])
    ok = [r for r in sel if r.get("success") and _finite((r.get("metrics") or {}).get(col.metric))]
    failed = [r for r in sel if not r.get("success") or
              ((r.get("metrics") or {}).get(col.metric) is not None and not _finite(r["metrics"][col.metric]))]
    return sel, ok, failed, other


def per_encoder(ok: list[dict], metric: str) -> dict[int, np.ndarray]:
    """A cell's values grouped by the encoder that made them: training seed -> values over its probe
    seeds (:func:`repeval.store.records.train_seed`), in training-seed order."""
    groups: dict[int, list[float]] = defaultdict(list)
    for r in ok:
        groups[train_seed(r["config"])].append(float(r["metrics"][metric]))
    return {t: np.array(groups[t]) for t in sorted(groups)}


def cell_stats(ok: list[dict], metric: str) -> tuple[float, float, str]:
    """(mean, std, spread) of a cell: the mean over encoders of each encoder's mean over probe seeds;
    the sample std over those encoder means when there are >= 2 trained encoders (``spread`` =
    training seeds), else over the one encoder's probe seeds (probe seeds; NaN for one value)."""
    groups = per_encoder(ok, metric)
    if not groups:
        return math.nan, math.nan, ""
    means = np.array([v.mean() for v in groups.values()])
    if len(means) >= 2:
        return float(means.mean()), float(means.std(ddof=1)), SPREAD_TRAIN
    vals = next(iter(groups.values()))
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan, (
        SPREAD_PROBE if len(vals) > 1 else "")


def build_table(records: list[dict], spec: TableSpec, dataset: str,
                models: list[str] | None = None, epoch: int | None = None) -> pd.DataFrame:
    """One row per cell of ``spec`` for ``dataset``: ours (mean, sample std, n) beside the paper.

    Records are taken at one epoch per model (:func:`at_epoch`: ``epoch``, default each model's last).
    Rows: our models with at least one record of the table's protocols (filtered by ``models``), and,
    when ``models`` is None, the paper's rows we have no record for (our cells then empty). A row is
    matched to the paper by its model name (column ``name`` of the paper's CSV). Columns with neither
    a record nor a paper number are dropped. Missing numbers are NaN (rendered as an em dash).
    ``not_converged`` / ``degenerate``: some successful record of the cell says ``converged: false`` /
    ``degenerate: true``; ``stale``: one was computed by an older family or protocol version
    (:func:`stale`); ``mixed_encoders``: the row's records of one training seed and epoch come from
    more than one set of weights (:func:`mixed_encoders`, over every protocol's records). Several trained
    encoders of one model (training seeds): :func:`cell_stats`."""
    records = [r for r in records if r.get("dataset", dataset) == dataset]
    mixed = mixed_encoders(records)
    by_row: dict[tuple[str, str], list[dict]] = defaultdict(list)   # (model, tap or "") -> records
    for r in at_epoch(records, epoch, spec.protocols):
        if models is None or r["model"] in models:
            by_row[r["model"], r.get("tap", "") if spec.per_tap else ""].append(r)
    # a model whose records fill none of this table's columns (e.g. a backbone's layer3 in Table 1) has
    # no row here: Table T shows it
    by_row = {k: rs for k, rs in by_row.items() if any(cell_records(rs, c)[0] for c in spec.columns)}
    display = {m: (rs[0].get("display") or m) for (m, _), rs in by_row.items()}
    clash = Counter(display.values())
    rows = [(_row_label(display[m] if clash[display[m]] == 1 else f"{display[m]} [{m}]", tap), m, display[m], tap)
            for m, tap in by_row]
    if models is None and spec.paper:
        rows += [(_display(m, label), m, _display(m, label), "") for m, label in paper.paper_rows(spec.paper, dataset)
                 if m not in display]
    rows.sort(key=lambda t: (_order_key(spec.paper, t[1], t[2]), t[0].casefold()))

    pv = paper.paper_values(spec.paper, dataset) if spec.paper else {}
    out = []
    for i, (label, model, disp, tap) in enumerate(rows):
        for col in spec.columns:
            sel, ok, failed, other = cell_records(by_row.get((model, tap), ()), col)
            mean, std, spread = cell_stats(ok, col.metric)
            trained = sorted({train_seed(r["config"]) for r in ok})
            p = pv.get((model, col.paper)) if col.paper else None
            ps = pv.get((model, col.paper_std)) if col.paper_std else None
            taps = sorted({r.get("tap", "") for r in sel})
            epochs = sorted({record_epoch(r) for r in ok})
            out.append({
                "dataset": dataset, "paper_dataset": (paper.paper_dataset(dataset) or "") if spec.paper else "",
                "table": spec.name, "row": i, "display": label, "model": model,
                "column": col.key, "column_label": col.label, "protocol": col.protocol,
                "tap": col.tap or tap or ",".join(taps), "metric": col.metric,
                "mean": mean, "std": std,
                "n": len(ok), "seeds": " ".join(str(s) for s in sorted(r.get("seed", 0) for r in ok)),
                "encoders": len(trained), "train_seeds": " ".join(map(str, trained)), "spread": spread,
                "n_failed": len(failed), "_records": len(sel), "_disp": disp, "_fmt": col.fmt,
                "_left_out": " ".join(str(r.get("seed", 0)) for r in other),
                "paper": p if p is not None else math.nan,
                "paper_std": ps if ps is not None else math.nan,
                "delta": mean - p if p is not None and ok and col.delta else math.nan, "_delta": col.delta,
                "epoch": " ".join(map(str, epochs)),
                "not_converged": any(converged_flag(r, col.metric) is False for r in ok),
                "degenerate": any(record_flag(r, "degenerate") is True for r in ok),
                "stale": any(stale(r) for r in ok),
                "mixed_encoders": any(encoder_key(r) in mixed for r in sel)})
    df = pd.DataFrame(out, columns=CSV_COLUMNS + ["_records", "_disp", "_fmt", "_left_out", "_delta"])
    if df.empty:
        return df
    floor = df[df["model"] == FLOOR_MODEL].set_index("column")["mean"]
    df["floor"] = math.nan if spec.per_tap else df["column"].map(floor).astype(float)   # Table T: no floor
    df["delta_floor"] = df["mean"] - df["floor"]
    keep = [c.key for c in spec.columns
            if ((df["column"] == c.key) & ((df["n"] + df["n_failed"] > 0) | df["paper"].notna())).any()]
    return df[df["column"].isin(keep)].reset_index(drop=True)


def format_left_out(df: pd.DataFrame) -> list[str]:
    """One line per cell whose records were computed under several configurations: the seeds of the
    configurations left out (a cell averages one configuration only)."""
    if df.empty:
        return []
    return [f"{r['dataset']} {r['table']} {r['display']} {r['column']}: seed(s) {r['_left_out']} computed under "
            f"another configuration left out (the cell holds seeds {r['seeds'] or 'none'} of one configuration)"
            for _, r in df[df["_left_out"] != ""].iterrows()]


def has_records(df: pd.DataFrame) -> bool:
    return not df.empty and bool((df["_records"] > 0).any())


# ---------------------------------------------------------------------------------------------- rank

RANK_COLUMNS = ["dataset", "table", "column", "n_common", "tau", "p_value", "models", "note", "degenerate_excluded"]


def rank_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau-b (scipy.stats.kendalltau) between our values and the paper's, per dataset and
    column, over the models that have both. Undefined (NaN, with the reason) for fewer than two
    common models or when one side is constant. A degenerate cell (‡: the SVM's W ≈ 0 regime, not an
    accuracy of a separator) is not ranked: ``degenerate_excluded`` names those rows."""
    from scipy.stats import kendalltau

    rows = []
    if df.empty:
        return pd.DataFrame(columns=RANK_COLUMNS)
    for (ds, table, col), g in df.groupby(["dataset", "table", "column"], sort=False):
        have = g[g["mean"].notna() & g["paper"].notna()]
        both = have[~have["degenerate"].astype(bool)]
        out = "; ".join(have.loc[have["degenerate"].astype(bool), "display"])
        tau = p = math.nan
        if not paper.paper_dataset(ds):
            note = f"undefined: the paper has no numbers for {ds}"
        elif g["paper"].isna().all():
            note = "undefined: the paper has no numbers in this column"
        elif len(both) < 2:
            note = f"undefined: {len(both)} model(s) in both ours and the paper (need 2)"
        elif both["mean"].nunique() < 2 or both["paper"].nunique() < 2:
            note = "undefined: all values tied on one side"
        else:
            res = kendalltau(both["mean"].to_numpy(), both["paper"].to_numpy())
            tau, p = float(res.statistic), float(res.pvalue)
            note = ""
        rows.append({"dataset": ds, "table": table, "column": col, "n_common": len(both), "tau": tau,
                     "p_value": p, "models": "; ".join(both["display"]), "note": note, "degenerate_excluded": out})
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def format_rank(rank: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in rank.iterrows():
        head = f"{r['dataset']} {r['table']} {r['column']}: "
        out = f" ({DEGENERATE_MARK} degenerate, not ranked: {r['degenerate_excluded']})" if r.get("degenerate_excluded") else ""
        if math.isnan(r["tau"]):
            lines.append(head + r["note"] + out)
        else:
            lines.append(head + f"tau = {r['tau']:+.3f} over {r['n_common']} models (p = {r['p_value']:.3g})" + out)
    return lines


def format_floor(df: pd.DataFrame) -> list[str]:
    """Per column with a random-init cell: every other model's difference to it, largest first, and
    how many models are above it (for NDM, lower means more independent dimensions, not better)."""
    lines = []
    for col, g in df[df["floor"].notna()].groupby("column", sort=False):
        g = g[(g["model"] != FLOOR_MODEL) & g["delta_floor"].notna()].sort_values("delta_floor", ascending=False)
        if g.empty:
            continue
        fmt = g["_fmt"].iloc[0]
        cells = ", ".join(f"{d} {v:+{fmt}}" for d, v in zip(g["display"], g["delta_floor"]))
        lines.append(f"{g['dataset'].iloc[0]} {g['table'].iloc[0]} {col}: random init "
                     f"{g['floor'].iloc[0]:{fmt}}; {int((g['delta_floor'] > 0).sum())}/{len(g)} above; {cells}")
    return lines




# ---------------------------------------------------------------------------------------------- budget

TIMING_HEAD = ("train_s", "extract_s")


def stage_seconds(records: list[dict]) -> dict[tuple, dict[str, float]]:
    """Training and extraction seconds per trained encoder and epoch (:func:`encoder_key`): the largest
    ``timing_s.train`` / ``timing_s.extract`` its records carry. A record carries the training since
    the previous evaluated epoch of its process (its stretch) and its epoch's extraction; a record
    written after a resumed or cached stage carries only what its process spent."""
    stages: dict[tuple, dict[str, float]] = {}
    for r in records:
        t = r.get("timing_s") or {}
        enc = stages.setdefault(encoder_key(r), dict.fromkeys(TIMING_HEAD, 0.0))
        for c in TIMING_HEAD:
            enc[c] = max(enc[c], float(t.get(c[:-2]) or 0.0))
    return stages


def timing_table(records: list[dict]) -> pd.DataFrame:
    """Compute budget per model from the records' ``timing_s`` (seconds of wall time).

    Columns: ``train_s``, ``extract_s``, one ``<protocol>_s`` per registered protocol that has records
    (registration order), ``other_s`` (records of protocols not registered now), ``total_s``,
    ``records``, ``encoders`` (trained encoders: training seeds). ``train_s`` and ``extract_s`` sum
    :func:`stage_seconds` over the model's epochs and encoders; protocol columns sum
    ``timing_s.protocol`` over the model's records (every epoch, every encoder).
    Records from processes that were paused or shared the CPU carry that wall time too: the table is an
    accounting, not a benchmark.
    """
    present = {r.get("protocol") for r in records}
    seconds = (*TIMING_HEAD, *(f"{p}_s" for p in PROTOCOLS if p in present), "other_s")   # summed into total_s
    rows: dict[str, dict] = {}
    for r in records:
        t = r.get("timing_s") or {}
        row = rows.setdefault(r["model"], {"model": r["model"], "display": r.get("display") or r["model"],
                                           "records": 0, "encoders": 0, **{c: 0.0 for c in seconds}})
        col = f"{r.get('protocol')}_s"
        row[col if col in seconds[len(TIMING_HEAD):-1] else "other_s"] += float(t.get("protocol") or 0.0)
        row["records"] += 1
    stages = stage_seconds(records)
    for (_, model, _, _), enc in stages.items():
        for c in TIMING_HEAD:
            rows[model][c] += enc[c]
    for _, model, _ in {key[:3] for key in stages}:        # one per trained encoder (dataset, model, seed)
        rows[model]["encoders"] += 1
    ordered = sorted(rows.values(), key=lambda row: _order_key(1, row["model"], row["display"]))
    df = pd.DataFrame(ordered, columns=["model", "display", *seconds, "total_s", "records", "encoders"])
    df["total_s"] = df[list(seconds)].sum(axis=1)
    total = {"model": "TOTAL", "display": "all models", "records": int(df["records"].sum()),
             "encoders": int(df["encoders"].sum()), **{c: float(df[c].sum()) for c in (*seconds, "total_s")}}
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)
