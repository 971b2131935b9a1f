"""Torch eager sessions: any torch module, and any torch model file (a crd-edge checkpoint,
TorchScript, a state dict or a built-in teacher's name). The eager model is the reference every
export is compared with; bench times it like any artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class TorchModuleSession:
    """A torch module as a Session. These generators are fully convolutional, so any size runs;
    ``input_shape`` is the size it was trained or exported at."""

    backend = "torch"

    def __init__(self, module: nn.Module, path: str | Path, size: tuple[int, int] = (256, 256),
                 threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.module = module.float().eval()
        self.path = Path(path)
        self.input_shape = (1, 3, *size)

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()


class TorchSession(TorchModuleSession):
    """A torch model file opened through :func:`crd_edge.runtime.torch_source.load_source`."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from crd_edge.runtime.torch_source import load_source

        source = load_source(path)
        self.source = source
        super().__init__(source.model, path, source.native_size or (256, 256), threads)
