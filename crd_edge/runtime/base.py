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
