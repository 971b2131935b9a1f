"""Small file helpers at the bottom of the package (no torch, no crd_edge imports)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/crd-edge`` (default ``~/.cache/crd-edge``): crd-edge's own cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crd-edge"
