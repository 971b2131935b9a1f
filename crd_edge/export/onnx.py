"""ONNX target: 1x3xHxW input (static, or dynamic H and W with ``--size dynamic``), opset 17,
weights inside the file; fp16 and int8 through onnxruntime's own converters. Also the writer behind the OpenVINO and TensorRT targets."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from pathlib import Path

import torch

from crd_edge.artifacts.contract import embed_onnx
from crd_edge.export.base import ExportDetails, ExportJob, tool_version

# onnxruntime runs every layer as it is; the last conv (to 3 channels) runs 11% faster in its
# space-to-depth form (student, 256 px, 2 threads: 29.6 -> 26.3 ms).
REWRITES = ("narrow_conv_to_space_to_depth",)
OPSET = 17                      # TensorRT 8.6-10, OpenVINO and onnxruntime all read it
CALIBRATION_PERCENTILE = 99.99  # see to_int8


def write_fp32(job: ExportJob, path: Path) -> None:
    """The float32 graph. The TorchScript-based exporter gives static shapes in a single file
    (the dynamo one splits weights into a .data file and needs onnxscript); with ``job.dynamic``
    the input's and output's height and width are named dimensions (one file for every size)."""
    import onnx

    from crd_edge.artifacts.contract import DYNAMIC_DIMS
    axes = ({name: dict(zip((2, 3), DYNAMIC_DIMS)) for name in ("image", "output")} if job.dynamic else None)
    with warnings.catch_warnings():  # the exporter's deprecation notice and constant-folding chatter
        warnings.simplefilter("ignore")
        torch.onnx.export(job.model.eval(), (job.example(),), str(path), input_names=["image"],
                          output_names=["output"], opset_version=OPSET, dynamo=False, dynamic_axes=axes)
    onnx.checker.check_model(str(path))


def to_fp16(fp32_path: Path, out_path: Path) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    onnx.save(convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True), str(out_path))
    return {"method": "onnxruntime.transformers.float16: fp16 weights and activations, float32 I/O kept"}


def conv_nodes(path: Path) -> dict[str, str]:
    """Conv and ConvTranspose node names by their layer key (the weight's torch name without
    ``.weight``, which the TorchScript exporter keeps as the initializer's name)."""
    import onnx
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    return {node.input[1].removesuffix(".weight"): node.name for node in graph.node
            if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1
            and node.input[1] in initializers and node.input[1].endswith(".weight")}


def to_int8_searched(job: ExportJob, fp32_path: Path, out_path: Path, symmetric: bool = False) -> dict:
    """int8 by :func:`to_int8`, with the fewest layers kept in float that bring the output within
    the search's aim of the float model on the calibration photos (crd_edge.export.int8_search)."""
    from crd_edge.export.int8_search import CONVOLUTION_OUTPUTS, search
    nodes = conv_nodes(fp32_path)

    def quantize(keys: list[str]) -> Path:
        candidate = job.work_dir / f"int8-{len(keys)}-float.onnx"
        to_int8(fp32_path, candidate, job.calibration, symmetric, exclude=[nodes[k] for k in keys if k in nodes],
                convolutions_only=CONVOLUTION_OUTPUTS in keys)
        return candidate

    chosen, record = search(job.model, job.calibration, quantize, keys=set(nodes), lead=(CONVOLUTION_OUTPUTS,))
    shutil.move(chosen, out_path)  # work_dir may sit on another file system
    return {**_int8_method(len(job.calibration), symmetric), "accuracy_search": record}


def _int8_method(images: int, symmetric: bool) -> dict:
    return {"method": f"onnxruntime static QDQ: per-channel symmetric int8 weights, "
                      f"{'symmetric int8' if symmetric else 'uint8'} activations, "
                      f"{images} calibration images, percentile {CALIBRATION_PERCENTILE} ranges"}


def to_int8(fp32_path: Path, out_path: Path, calibration: torch.Tensor, symmetric: bool = False,
            exclude: list[str] = (), convolutions_only: bool = False) -> dict:
    """Static QDQ int8 with per-channel weights, calibrated on ``calibration``. Activation ranges
    are the 99.99th percentile, not min/max: a few extreme pre-InstanceNorm values otherwise
    stretch the int8 grid (trained default student, 256 px, 3 held-out photos, PSNR min vs
    fp32: min/max 21.5 dB, entropy 21.5, percentile 99.9 16.3, 99.99 30.1-30.8, 99.999 23-25).
    ``symmetric``
    int8 activations (zero point 0) are what TensorRT's explicit quantisation expects.
    Dynamic int8 is not offered: it made a conv generator 10x slower on a CPU in our measurements.
    ``exclude``: node names left in float; ``convolutions_only``: every other op type and the
    convolutions' outputs too (only their inputs and weights are int8)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": img[None].numpy()} for img in calibration])

        def get_next(self):
            return next(self.items, None)

    activation = QuantType.QInt8 if symmetric else QuantType.QUInt8
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a pre-processing hint on the root logger every time
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)  # its calibration sessions' graph clean-up warnings
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its calibration prints would end up in the table
            quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=activation, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude),
                            op_types_to_quantize=["Conv", "ConvTranspose"] if convolutions_only else None,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                           "CalibPercentile": CALIBRATION_PERCENTILE,
                                           "OpTypesToExcludeOutputQuantization":
                                               ["Conv", "ConvTranspose"] if convolutions_only else []})
    finally:
        root.setLevel(level)
        onnxruntime.set_default_logger_severity(2)  # onnxruntime's own default
    return _int8_method(len(calibration), symmetric)


def versions() -> dict[str, str]:
    return {"torch": str(torch.__version__), "onnx": tool_version("onnx"),
            "onnxruntime": tool_version("onnxruntime"), "opset": str(OPSET)}


def export(job: ExportJob, path: Path) -> ExportDetails:
    if job.precision == "fp32":
        write_fp32(job, path)
        conversion = {"method": "torch.onnx.export (TorchScript exporter), float32"}
    else:
        fp32 = job.work_dir / "fp32.onnx"
        write_fp32(job, fp32)
        conversion = to_fp16(fp32, path) if job.precision == "fp16" else to_int8_searched(job, fp32, path)
    embed_onnx(path, {**job.contract, "layout": "NCHW"})
    return ExportDetails("image", "output", "NCHW", versions(), conversion)
