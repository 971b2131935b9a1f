"""Inference sessions, one class per backend, chosen through the format table.

Every session takes and returns NCHW float32 in [-1, 1]; layout and dtype conversions happen
inside. Export verification, benchmarks, eval and the demo all run artifacts through here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from crd_edge.artifacts import FORMATS, all_suffixes, format_of
from crd_edge.errors import UserError
from crd_edge.runtime.base import Session


# The session class of each format that crd-edge runs (the format table says which do; the
# classes live here, in the layer that runs them). Imported on first use: each pulls its runtime.
SESSIONS = {
    "onnx": ("crd_edge.runtime.onnxruntime_session", "OnnxRuntimeSession"),
    "openvino": ("crd_edge.runtime.openvino_session", "OpenVINOSession"),
    "tflite": ("crd_edge.runtime.litert_session", "LiteRTSession"),
    "coreml": ("crd_edge.runtime.coreml_session", "CoreMLSession"),
    "torch": ("crd_edge.runtime.torch_session", "TorchSession"),
    "web": ("crd_edge.runtime.browser_session", "BrowserSession"),
    "web-litert": ("crd_edge.runtime.browser_session", "BrowserSession"),  # the same pages, LiteRT.js inside
}


def open_session(path: str | Path, **options) -> Session:
    """Open ``path`` with the session class its format names."""
    path = Path(path)
    if not path.exists():  # (a .mlpackage is a folder)
        raise UserError(f"{path}: no such model file")
    fmt = format_of(path)
    if fmt is not None:  # the graph handed to TensorRT runs as the ONNX file it is
        fmt = FORMATS[fmt.file_format]
    if fmt is None or not fmt.session:
        raise UserError(f"{path}: no runtime for {path.suffix!r} files (supported: {', '.join(all_suffixes())})")
    module_name, class_name = SESSIONS[fmt.target]
    return getattr(importlib.import_module(module_name), class_name)(path, **options)


__all__ = ["SESSIONS", "Session", "open_session"]
