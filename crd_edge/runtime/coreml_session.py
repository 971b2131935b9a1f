"""Core ML session (macOS only: coremltools predicts through the system's Core ML framework).

On other systems an ``.mlpackage`` can be converted and its spec inspected, not run;
``crd-edge export`` verifies it with :func:`crd_edge.export.coreml.inspect` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError


class CoreMLSession:
    backend = "coreml"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        # ``threads`` is accepted for the common session signature; Core ML schedules its own
        # threads (and may run on the GPU or Neural Engine), so there is nothing to set.
        self.path = Path(path)
        if sys.platform != "darwin":
            raise UserError(f"{self.path}: Core ML models run only on macOS; on this machine its spec "
                            "can be inspected (crd-edge export verifies it)")
        try:
            import coremltools as ct
        except ImportError:
            raise UserError("running .mlpackage models needs coremltools: pip install 'crd-edge[coreml]'") from None
        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=ct.ComputeUnit.ALL)
        except Exception as exc:  # coremltools and Core ML raise assorted types
            raise UserError(f"{self.path}: Core ML cannot load it ({str(exc).splitlines()[0][:120]})") from None
        description = self.model.get_spec().description
        self.input_name = description.input[0].name
        self.output_name = description.output[0].name
        self.input_shape = tuple(description.input[0].type.multiArrayType.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        outputs = self.model.predict({self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(outputs[self.output_name], dtype=np.float32)
