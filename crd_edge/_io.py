"""Small file helpers at the bottom of the package (no torch, no crd_edge imports)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/crd-edge`` (default ``~/.cache/crd-edge``): crd-edge's own cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crd-edge"


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file), then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path
