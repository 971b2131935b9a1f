"""ONNX exporter: static 1x3xSxS input, opset 17, weights inside the file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

OPSET = 17


def export_onnx(model: nn.Module, size: int, path: Path) -> dict:
    """Write ``model`` as ONNX to ``path`` (a temporary name the caller renames into place)."""
    import onnx
    model = model.eval()
    example = torch.zeros(1, 3, size, size)
    # The TorchScript-based exporter: static shapes, single file; the dynamo one would split
    # weights into a .data file and needs onnxscript.
    torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["output"],
                      opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(str(path))
    import onnxruntime
    return {"input_name": "image", "output_name": "output",
            "tool_versions": {"torch": str(torch.__version__), "onnx": onnx.__version__,
                              "onnxruntime": onnxruntime.__version__, "opset": OPSET}}
