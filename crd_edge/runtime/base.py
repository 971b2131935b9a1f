"""The Session protocol shared by every backend."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Session(Protocol):
    """An opened model: ``run`` maps NCHW float32 [-1, 1] to NCHW float32 [-1, 1]."""

    path: Path
    backend: str
    input_shape: tuple[int, ...]

    def run(self, x: np.ndarray) -> np.ndarray: ...


def input_hw(shape: tuple) -> tuple[int, int] | None:
    """(H, W) of a session's 4-D NCHW or NHWC input shape (NHWC: last dim 3, second not);
    ``None`` when H or W is dynamic (a name, ``None`` or <= 0). A dynamic batch is fine."""
    dims = tuple(shape)
    if len(dims) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims[1:]):
        return None
    nhwc = dims[-1] == 3 and dims[1] != 3
    return (int(dims[1]), int(dims[2])) if nhwc else (int(dims[2]), int(dims[3]))


def summarise_ops(samples: list[tuple[str, str, float]], calls: int) -> list[dict]:
    """(op type, where it ran, ms) samples over ``calls`` inferences -> one row per op type and
    place: nodes, ms per inference, share of the total; slowest first."""
    rows: dict[tuple[str, str], dict] = {}
    for op, where, ms in samples:
        row = rows.setdefault((op, where), {"op": op, "where": where, "calls": 0, "ms": 0.0})
        row["calls"] += 1
        row["ms"] += ms
    total = sum(r["ms"] for r in rows.values()) or 1.0
    for r in rows.values():
        r["nodes"] = round(r.pop("calls") / calls)
        r["share"] = r["ms"] / total
        r["ms"] = r["ms"] / calls
    return sorted(rows.values(), key=lambda r: -r["ms"])
