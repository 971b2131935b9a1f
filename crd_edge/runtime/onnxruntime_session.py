"""ONNX Runtime session (CPU by default; CUDA when asked for and available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crd_edge.errors import UserError


class OnnxRuntimeSession:
    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("running .onnx files needs onnxruntime: pip install onnxruntime") from None
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise UserError(f"{self.path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:120]})") from None
        (inp,) = self.session.get_inputs()
        self.input_name = inp.name
        self.input_shape = tuple(inp.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
