"""LiteRT (TFLite) session through ai-edge-litert's interpreter (XNNPACK on CPU).

Files from ``crd_edge.export.tflite`` are NHWC; a file with (1, 3, H, W) input is run as NCHW.
Quantised (int8/uint8) input or output tensors are converted with the tensor's own scale and
zero point, so a full-integer file is called like any other.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError


class LiteRTSession:
    backend = "litert"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise UserError("running .tflite files needs ai-edge-litert: pip install 'crd-edge[tflite]'") from None
        self.path = Path(path)
        try:
            with _without_info_lines():
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # what the interpreter raises for a bad file
            raise UserError(f"{self.path}: LiteRT cannot load it ({str(exc).splitlines()[0][:120]})") from None
        (self.input,), (self.output,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        # Channels sit last when the last axis is 3 and the second is not (sizes are >= 8 here).
        self.channels_last = self.input_shape[-1] == 3 and self.input_shape[1] != 3

    def run(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [-1, 1] -> NCHW float32; a batch runs one image at a time (files are batch 1)."""
        x = np.asarray(x, dtype=np.float32)
        return np.concatenate([self._run_one(image[None]) for image in x])

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        if self.channels_last:
            x = x.transpose(0, 2, 3, 1)
        self.interpreter.set_tensor(self.input["index"], _quantize(np.ascontiguousarray(x), self.input))
        self.interpreter.invoke()
        y = _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)
        return y.transpose(0, 3, 1, 2) if self.channels_last else y


def _quantize(x: np.ndarray, tensor: dict) -> np.ndarray:
    dtype = tensor["dtype"]
    if dtype == np.float32:
        return x
    scale, zero_point = tensor["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, tensor: dict) -> np.ndarray:
    if y.dtype == np.float32:
        return y
    scale, zero_point = tensor["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


@contextlib.contextmanager
def _without_info_lines():
    """LiteRT's C++ core prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the
    process's stderr when an interpreter is made (no Python switch turns it off). Catch the file
    descriptor's output meanwhile and pass on everything but its ``INFO:`` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not line.startswith("INFO: ")]
            if kept:
                sys.stderr.write("".join(kept))
