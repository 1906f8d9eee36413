"""Writing matplotlib figures, one helper for ``repeval table``'s plots and ``repeval validate``'s:
the Agg backend (no display; import ``plt`` from here) and atomic PNG writes."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..store.storage import atomic_write_bytes  # noqa: E402


def save_png(fig, path: Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG (tight bounding box), write it atomically to ``path``, close the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
