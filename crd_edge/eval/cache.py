"""On-disk cache of reference Inception features and statistics (``.npz``, one file per key).

Computing the reference set (thousands of real images, or the teacher's outputs at about 1.6 s
an image on a CPU) costs far more than scoring a student, and it is the same for every
student. The file name is a hash of everything the numbers depend on:

* the images (:attr:`crd_edge.eval.images.ImageSource.key`: names, sizes and mtimes of the
  files, or the built-in photos' content) and, for a teacher reference, the teacher's sha256;
* the network file's sha256 and the preprocessing version;
* the evaluation size the images were fitted to.

Any change gives a new key, so a stale entry is never read (old ones are left for ``rm``).
Writes go to a temporary file renamed into place: concurrent runs and Ctrl-C never leave a
truncated entry. Files are read with ``allow_pickle=False``.

Location: ``cache_dir`` argument, else ``$CRD_EDGE_FID_CACHE``, else
``$XDG_CACHE_HOME/crd-edge/fid`` (``~/.cache/crd-edge/fid``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ENV_VAR = "CRD_EDGE_FID_CACHE"
FORMAT = 1

__all__ = ["default_cache_dir", "cache_key", "cache_file", "lookup", "store", "cached_features", "ENV_VAR"]


def default_cache_dir() -> Path:
    """``$CRD_EDGE_FID_CACHE``, else ``$XDG_CACHE_HOME/crd-edge/fid`` (``~/.cache/...``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    from crd_edge.eval.inception import crd_edge_cache_dir  # light: no torch at import
    return crd_edge_cache_dir() / "fid"


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``parts`` (sorted keys)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_file(parts: dict[str, Any], cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """Where the entry for ``parts`` lives, and its full key."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(parts)
    return folder / f"{key[:32]}.npz", key


def lookup(parts: dict[str, Any], cache_dir: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """The cached ``{"features", "mu", "sigma"}`` for ``parts``, or ``None`` on a miss (an
    unreadable or foreign file counts as a miss and is replaced by the next :func:`store`)."""
    path, key = cache_file(parts, cache_dir)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {name: data[name] for name in ("features", "mu", "sigma", "meta")}
        if json.loads(str(stored.pop("meta"))).get("key") != key:
            return None
    except (OSError, ValueError, KeyError):
        return None
    stored["features"] = stored["features"].astype(np.float64)
    return stored


def store(parts: dict[str, Any], features: np.ndarray,
          cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Compute mean/covariance of ``features`` (``N x D``), write the entry atomically, and
    return exactly what a later :func:`lookup` will read (float32 features), so a hit and a
    miss give the same KID."""
    from crd_edge.eval.fid import feature_stats

    path, key = cache_file(parts, cache_dir)
    features = np.asarray(features, dtype=np.float32).astype(np.float64)
    mu, sigma = feature_stats(features)
    meta = json.dumps({"key": key, "parts": parts, "images": len(features)}, sort_keys=True)
    _atomic_savez(path, features=features.astype(np.float32), mu=mu, sigma=sigma, meta=np.array(meta))
    return {"features": features, "mu": mu, "sigma": sigma}


def cached_features(parts: dict[str, Any], compute: Callable[[], np.ndarray],
                    cache_dir: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Features, mean and covariance for ``parts``: from the cache, or ``compute()`` the
    ``N x D`` features and store them. Returns ``(stats, {"hit": bool, "file": str})``.
    Features are kept (not only the Gaussian statistics) because KID needs them."""
    path, _ = cache_file(parts, cache_dir)
    stats = lookup(parts, cache_dir)
    if stats is not None:
        return stats, {"hit": True, "file": str(path)}
    return store(parts, compute(), cache_dir), {"hit": False, "file": str(path)}
