"""Inference sessions, one class per backend, chosen by file suffix (DESIGN.md seam 3).

Every session takes and returns NCHW float32 in [-1, 1]; layout and dtype conversions happen
inside. Export verification, benchmarks and the demo all run artifacts through here.
"""

from __future__ import annotations

from pathlib import Path

from crd_edge.errors import UserError
from crd_edge.runtime.base import Session

_BY_SUFFIX = {".onnx": "crd_edge.runtime.onnxruntime_session:OnnxRuntimeSession",
              ".pt": "crd_edge.runtime.torch_session:TorchSession",
              ".tflite": "crd_edge.runtime.litert_session:LiteRTSession",
              ".openvino": "crd_edge.runtime.openvino_session:OpenVINOSession",
              ".xml": "crd_edge.runtime.openvino_session:OpenVINOSession",
              ".mlpackage": "crd_edge.runtime.coreml_session:CoreMLSession"}


def open_session(path: str | Path, **options) -> Session:
    """Open ``path`` with the session class registered for its suffix."""
    path = Path(path)
    if not path.exists():  # (a .mlpackage is a folder)
        raise UserError(f"{path}: no such model file")
    target = _BY_SUFFIX.get(path.suffix.lower())
    if target is None:
        raise UserError(f"{path}: no runtime for {path.suffix!r} files (supported: {', '.join(_BY_SUFFIX)})")
    module_name, class_name = target.split(":")
    import importlib
    return getattr(importlib.import_module(module_name), class_name)(path, **options)


__all__ = ["Session", "open_session"]
