"""``repeval table``: Tables 1 and 4 of the paper rebuilt from stored records, beside the paper's numbers.

Only records are read (``results/<dataset>/records/**.json``, written by :mod:`repeval.runner`);
nothing is recomputed. Three stages, each a plain function in its own module:

1. ``build``: :func:`build_table`: records -> a tidy frame, one row per cell (model x column) holding our
   mean, sample std and seed count, the paper's number and the difference (pure, no I/O), and
   :func:`rank_agreement` (Kendall's tau between our ranking of the models and the paper's, per column);
2. ``render``: :func:`footnotes`, :func:`render_markdown`, :func:`render_latex`, :func:`render_csv`;
3. ``command``: :func:`cmd_table` writes ``table1.{md,tex,csv}``, ``table4.{md,tex,csv}``,
   ``rank_agreement.csv`` and the plots atomically under ``results/<dataset>/``.

Table 1 (DIM_SPEC.md protocol 1): non-linear probe (protocol ``mlp``, metric ``accuracy``) on the
conv, fc and y taps. Table 4: linear SVM (``svm``/``accuracy``, five seeds) on the three taps, then
reconstruction SSIM (``recon``/``ssim``; the paper's "MS-SSIM" column is single-scale SSIM in the
released code, DIM_SPEC.md protocol 3), our true ``ms_ssim`` where the recon protocol reports it,
MINE (``mine``/``mi``) and NDM (``ndm``/``ndm``). A missing cell is an em dash, never 0.
"""
from .build import (CSV_COLUMNS, EM_DASH, FORMATS, SPECS, TABLE1, TABLE4, Column, TableSpec,  # noqa: F401
                    build_table, discover_datasets, format_floor, format_rank, has_records, load_records, rank_agreement,
                    timing_table)
from .command import cmd_table, print_tables  # noqa: F401
from .render import (footnotes, render_csv, render_latex, render_markdown,  # noqa: F401
                     tex_escape)
