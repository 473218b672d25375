"""Matplotlib without a display: ``pyplot()`` selects the Agg backend, ``save_png`` writes atomically and closes."""
from __future__ import annotations

from pathlib import Path

from .io import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: plotting is never on an import path)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` as PNG (temp file + rename) and close it."""
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None))
    pyplot().close(fig)
    return out
