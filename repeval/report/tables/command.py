"""``repeval table`` and the tables printed after ``repeval run``: build, render, write atomically."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .. import paper
from ...store.progress import LOGGER
from ...store.storage import atomic_write_text
from ...registry import RegistryError, check_name
from .build import (FORMATS, TABLE1, TABLES, TableSpec, build_table, discover_datasets, format_floor, format_left_out,
                    format_rank, has_records, load_records, rank_agreement, timing_table)
from .compare import format_comparisons, pairwise
from .coverage import format_unshown, unshown
from .curves import curve_table
from .render import flag_legend, footnotes, render_csv, render_latex, render_markdown, table_title
from .spectrum import format_collapsed, render_spectrum, spectrum_table

# ---------------------------------------------------------------------------------------------- command

def _err(msg: str) -> int:
    print(f"repeval: error: {msg}", file=sys.stderr)
    return 2


def _write(path: Path, text: str, written: list[Path]) -> None:
    atomic_write_text(path, text)
    written.append(path)


def _emit(df: pd.DataFrame, records: list[dict], spec: TableSpec, out: Path, formats: list[str],
          plots: bool, written: list[Path], epoch: int | None) -> tuple[pd.DataFrame | None, list[str]]:
    """Write one table in every format (+ its plot); return its rank agreement (None without paper)
    and its footnotes."""
    notes = footnotes(df, records, spec, epoch)
    rank = rank_agreement(df) if spec.paper else None
    if "md" in formats:
        _write(out / f"{spec.name}.md", render_markdown(df, spec, notes, rank), written)
    if "tex" in formats:
        _write(out / f"{spec.name}.tex", render_latex(df, spec, notes), written)
    if "csv" in formats:
        _write(out / f"{spec.name}.csv", render_csv(df), written)
    if plots:
        from ..plots import plot_table
        _figure(plot_table(df, spec, out / f"{spec.name}.png", table_title(df, spec)), out / f"{spec.name}.png",
                "every column is saturated or has fewer than two values", written)
    return rank, notes


def _figure(made: Path | None, path: Path, why: str, written: list[Path]) -> None:
    """Record a figure written, or say why none was (and remove the one an earlier run left there, which
    would otherwise outlive the data that made it)."""
    if made is not None:
        written.append(made)
        return
    print(f"{path.name} omitted: {why}")
    if path.exists():
        path.unlink()
        print(f"  (removed the earlier {path})")


def _curves(recs: list[dict], ds: str, out: Path, formats: list[str], plots: bool,
            written: list[Path]) -> pd.DataFrame:
    curves = curve_table(recs, ds)
    if curves.empty:
        print(f"{ds}: no records of a protocol with a learning curve: learning_curve skipped")
        return curves
    if "csv" in formats:
        _write(out / "learning_curve.csv", curves.to_csv(index=False, float_format="%.6g", lineterminator="\n"),
               written)
    if plots:
        from ..plots import plot_curves
        _figure(plot_curves(curves, out / "learning_curve.png",
                            f"Learning curves, {paper.dataset_title(ds)}: accuracy against encoder epoch"),
                out / "learning_curve.png", "no model was evaluated at two encoder epochs", written)
    return curves


def _spectrum(recs: list[dict], ds: str, out: Path, formats: list[str], written: list[Path],
              epoch: int | None) -> pd.DataFrame:
    df = spectrum_table(recs, ds, epoch)
    if df.empty:
        print(f"{ds}: no record carries a feature spectrum (older records): spectrum skipped")
        return df
    if "md" in formats:
        _write(out / "spectrum.md", render_spectrum(df), written)
    if "csv" in formats:
        _write(out / "spectrum.csv", df.to_csv(index=False, float_format="%.6g", lineterminator="\n"), written)
    for line in format_collapsed(df):
        print(f"\n{line}")
    return df


def cmd_table(args) -> int:
    """Build Tables 1, 4 and X per dataset from stored records; see the module docstring."""
    epoch = getattr(args, "epoch", None)
    if epoch is not None and epoch < 0:
        return _err(f"--epoch: must be >= 0, got {epoch}")
    formats = [f.strip() for f in (args.format or "").split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        return _err(f"--format: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    results = Path(args.results)
    named = [d.strip() for item in (args.dataset or []) for d in item.split(",") if d.strip()]
    for d in named:   # a label is one path segment, as `repeval run` makes them: never a path
        try:
            check_name(d, "dataset label")
        except RegistryError as e:
            return _err(f"--dataset: {e}")
    datasets = list(dict.fromkeys(named or discover_datasets(results)))
    if not datasets:
        return _err(f"no records under {results}/<dataset>/records (run `repeval run` first)")
    loaded = {}
    for ds in datasets:
        recs, problems = load_records(results, ds)
        for p in problems:
            LOGGER.warning(f"not counted: {p}")
        if not recs:
            return _err(f"no records for dataset '{ds}' under {results / ds / 'records'}")
        loaded[ds] = recs

    plots = not args.no_plots
    written: list[Path] = []
    ranks, t1_frames, frames = [], [], []
    for ds, recs in loaded.items():
        out = Path(args.out) if args.out and len(datasets) == 1 else (
            Path(args.out) / ds if args.out else results / ds)
        ds_ranks, ds_frames, ds_notes = [], {}, {}
        for spec in TABLES:
            df = build_table(recs, spec, ds, epoch=epoch)
            if not has_records(df):
                at = f" at epoch {epoch}" if epoch is not None else ""
                print(f"{ds}: no records of {', '.join(sorted(spec.protocols))}{at}: {spec.name} skipped")
                continue
            print(f"\n{render_markdown(df, spec, []).split(chr(10) + 'Notes:')[0].rstrip()}")
            if legend := flag_legend(df):
                print(legend)
            for line in format_left_out(df):
                LOGGER.warning(line)
            rank, ds_notes[spec.name] = _emit(df, recs, spec, out, formats, plots, written, epoch)
            if rank is not None:
                ds_ranks.append(rank)
            frames.append(df)
            ds_frames[spec.name] = df
            if spec is TABLE1 and paper.paper_dataset(ds):
                t1_frames.append(df)
        print(f"\n{ds}: {format_unshown(unshown(recs, epoch), len(recs))}")
        if ds_ranks and "csv" in formats:
            _write(out / "rank_agreement.csv",
                   pd.concat(ds_ranks).to_csv(index=False, float_format="%.6g", lineterminator="\n"), written)
        timing = timing_table(recs)
        if "csv" in formats:
            _write(out / "timing.csv", timing.to_csv(index=False, float_format="%.1f", lineterminator="\n"), written)
        ranks += ds_ranks
        spectrum = _spectrum(recs, ds, out, formats, written, epoch)
        curves = _curves(recs, ds, out, formats, plots, written)
        comparisons = pairwise(recs, ds, epoch)
        if "csv" in formats and not comparisons.empty:
            _write(out / "comparisons.csv", comparisons.to_csv(index=False, float_format="%.6g",
                                                               lineterminator="\n"), written)
        for line in format_comparisons(comparisons):
            print(f"\n{ds}: {line}")
        if plots:
            from ..plots import plot_recon_grids
            names = {r["model"]: r.get("display") or r["model"] for r in recs}
            p = plot_recon_grids(results / ds / "recon", out / "recon_grids.png", names)
            if p is None:
                print(f"{ds}: no reconstruction grids under {results / ds / 'recon'}: recon_grids.png skipped")
            else:
                written.append(p)
        if "md" in formats:
            from .report import REPORT_HTML, REPORT_MD, Facts, render_report
            figures = {p.name for p in written if p.parent == out and p.suffix == ".png"}
            facts = Facts(recs, ds, ds_frames, ds_notes, pd.concat(ds_ranks) if ds_ranks else None, comparisons,
                          curves, timing, spectrum, figures, results / ds, epoch)
            md, html = render_report(facts)
            _write(out / REPORT_MD, md, written)
            _write(out / REPORT_HTML, html, written)
    if len(t1_frames) > 1:   # the paper's layout: one Table 1, a column group per CIFAR dataset
        both = pd.concat(t1_frames, ignore_index=True)
        all_recs = [r for recs in loaded.values() for r in recs]
        _emit(both, all_recs, TABLE1, Path(args.out) if args.out else results, formats, plots, written, epoch)
    if ranks:
        print("\nRank agreement with the paper (Kendall's tau-b, our ranking vs the paper's):")
        for line in format_rank(pd.concat(ranks)):
            print("  " + line)
    floors = [line for df in frames for line in format_floor(df)]
    if floors:
        print("\nDifference to the random-init floor (ours - Random init, same column):")
        for line in floors:
            print("  " + line)
    print("\nwritten:")
    for p in written:
        print(f"  {p}")
    return 0


def print_tables(results: Path, dataset: str, models: list[str] | None = None) -> None:
    """The tables (no footnotes) on stdout: what ``repeval run`` prints at its end."""
    recs, problems = load_records(results, dataset)
    for p in problems:
        print(f"repeval: warning: not counted: {p}", file=sys.stderr)
    shown = False
    for spec in TABLES:
        df = build_table(recs, spec, dataset, models)
        if has_records(df):
            print("\n" + render_markdown(df, spec, []).split("\nNotes:")[0].rstrip())
            if legend := flag_legend(df):
                print(legend)
            for line in format_left_out(df):
                print(f"repeval: warning: {line}", file=sys.stderr)
            shown = True
    if not shown:
        print(f"(no table records for {dataset})")
    else:
        print(f"\n(footnotes, paper comparison files and plots: repeval table --dataset {dataset} "
              f"--results {results})")
