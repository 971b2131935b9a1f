"""OpenVINO session (CPU): an exported ``.openvino`` folder or a bare ``model.xml``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crd_edge.errors import UserError


class OpenVINOSession:
    backend = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "CPU",
                 precision_hint: str = "f32") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise UserError("running OpenVINO models needs openvino: pip install 'crd-edge[openvino]'") from None
        self.path = Path(path)
        xml = self.path / "model.xml" if self.path.is_dir() else self.path
        # Without the hint, CPUs with bf16/AMX units silently compute in bf16 (about 2-3
        # significant digits): fp32 artifacts would then fail their verification.
        config = {"INFERENCE_PRECISION_HINT": precision_hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = ov.Core().compile_model(str(xml), device, config)
        except Exception as exc:  # OpenVINO raises plain RuntimeErrors
            raise UserError(f"{self.path}: OpenVINO cannot load it ({str(exc).splitlines()[0][:120]})") from None
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(self.compiled.input(0).get_shape())

    def run(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32).copy()
