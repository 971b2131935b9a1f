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


def convert_precision(fp32_path: Path, precision: str, out_path: Path, calibration) -> dict:
    """fp16 (weights and activations, float32 I/O kept) or int8 (static QDQ, per-channel
    weights, calibrated on ``calibration`` images) from an fp32 ONNX file, via onnxruntime's
    own converters. Dynamic int8 is not offered: it made a conv generator 10x slower here."""
    import onnx
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        onnx.save(model, str(out_path))
        return {"method": "onnxruntime.transformers.float16, float32 I/O kept"}
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": img[None].numpy()} for img in calibration])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return {"method": f"onnxruntime static QDQ, per-channel int8 weights, uint8 activations, "
                      f"{len(calibration)} calibration images"}
