"""``repeval table``: Tables 1 and 4 of the paper rebuilt from stored records, beside the paper's numbers,
Table X (the extra protocols) and the learning curves.

Only records are read (``results/<dataset>/records/**.json``, written by :mod:`repeval.engine.runner`, read
through :func:`load_records` alone); nothing is recomputed. Stages, each a plain function:

1. ``build``: :func:`build_table`: records at one encoder epoch per model -> a tidy frame, one row per
   cell (model x column) holding our mean, sample std, seed count and flags, the paper's number and the
   difference (pure), :func:`rank_agreement` (Kendall's tau against the paper, per column) and
   :func:`timing_table`; ``curves``: :func:`curve_table` (accuracy against encoder epoch);
   ``compare``: :func:`pairwise` (every pair of rows per column against the seed spread, Welch's
   test with Holm's correction over all comparisons);
2. ``render``: :func:`footnotes`, :func:`render_markdown`, :func:`render_latex`, :func:`render_csv`;
3. ``command``: :func:`cmd_table` writes ``table{1,4,X,T}.{md,tex,csv}``, ``rank_agreement.csv``,
   ``timing.csv``, ``comparisons.csv``, ``learning_curve.{csv,png}`` and the plots atomically under ``results/<dataset>/``.

The columns, their number format, the title phrase, the "Cells" footnote and the learning-curve
metrics are declared by each protocol at its registration (:class:`repeval.plugin.protocol.Reporting`):
a new protocol's columns, footnote and timing appear here with no edit to this package. Table 1
(Hjelm et al. 2019, Sec. 4): the non-linear probe ``mlp``; Table 4: ``svm``, ``recon``, ``mine``,
``ndm``; Table X: ``knn`` and ``linear``, never mixed into the paper's tables; Table T: every tap of
every model (a backbone's stages, a plugin's own taps) with every reported metric of every protocol,
and :func:`unshown` names the records no table shows, and why. A missing cell is an em dash, never 0.
"""
from .build import (COLUMN_TABLES, CSV_COLUMNS, EM_DASH, FORMATS, SPECS, TABLE1, TABLE4, TABLES,  # noqa: F401
                    TABLET, TABLEX, TableSpec, at_epoch, build_table, discover_datasets, format_floor, format_rank, has_records, load_records,
                    rank_agreement, record_epoch, record_flag, tap_columns, timing_table)
from .compare import COMPARISON_COLUMNS, holm, pairwise  # noqa: F401
from .coverage import format_unshown, unshown  # noqa: F401
from .curves import CURVE_COLUMNS, curve_table  # noqa: F401
from .command import cmd_table, print_tables  # noqa: F401
from .render import (footnotes, render_csv, render_latex, render_markdown,  # noqa: F401
                     tex_escape)
