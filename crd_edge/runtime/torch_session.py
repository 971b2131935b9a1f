"""Torch eager session over a crd-edge checkpoint (the reference every export is compared with)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crd_edge.checkpoint import load_student


class TorchSession:
    backend = "torch"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.model, ckpt = load_student(self.path)
        self.input_shape = (1, 3, *ckpt["student"]["input_size"])
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
