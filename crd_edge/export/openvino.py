"""OpenVINO target: the ONNX graph converted to OpenVINO IR (model.xml + model.bin in a
``.openvino`` folder); fp16 compresses the weights; int8 is NNCF post-training quantisation
calibrated on real photos. OpenVINO was the fastest CPU runtime in our benchmarks (docs/guide.md)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

from crd_edge.artifacts.contract import KEY as CONTRACT_KEY
from crd_edge.export import onnx as onnx_target
from crd_edge.export.base import ExportDetails, ExportJob, missing_extra, tool_version

# OpenVINO reads reflect Pad, InstanceNorm and k3 transposed convs; the space-to-depth form of
# the last conv made the InstanceNorm student 21% faster (13.9 -> 10.9 ms, 256 px, 2 threads).
# 4x4 blocks, not 2x2: OpenVINO 2026.4 computes the 2x2-block conv (8 -> 12 channels, 8x8
# kernel, stride 2) wrongly in bf16 on a CPU with AMX: the inherited student's fp16 artifact
# read 16.6 dB against torch, 60.6 with 4x4 blocks and 60.9 with no rewrite. In f32 the three
# forms are within noise here (18.9 / 19.4 / 21.5 ms); 2x2 was 4% faster for an earlier student.
REWRITES = ("narrow_conv_to_space_to_depth",)


CONVOLUTIONS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData")


def _quantize(model, calibration, float_ops: list[str] = (), float_norm_inputs: bool = False):
    try:
        import nncf
    except ImportError:
        raise missing_extra("openvino", "nncf (OpenVINO's quantiser)") from None
    dataset = nncf.Dataset([img[None].numpy() for img in calibration])
    # Generators have no softmax/attention; the default (performance) preset quantises
    # convolutions symmetrically, which the CPU plugin runs on its int8 kernels. A student's
    # colour head stays in float: it turns a few pooled numbers into a colour matrix applied to
    # every pixel, so an int8 rounding there shifts the whole image (the _colour student fell to
    # 26.6 dB with them quantised). They are a few thousand MACs; the convolutions stay int8,
    # but those in ``float_ops`` (the accuracy search's choice). ``float_norm_inputs``: NNCF
    # leaves the InstanceNorms' (MVN) inputs in float, which it otherwise rounds to int8.
    ignored = nncf.IgnoredScope(names=list(float_ops), patterns=[r".*/colour/.*"],
                                types=["MVN"] if float_norm_inputs else [], validate=False)
    from nncf.common.logging.logger import nncf_logger
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # a line for every op its ignored scope skips
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # progress bars would end up in the table
            return nncf.quantize(model, dataset, subset_size=len(calibration), ignored_scope=ignored)
    finally:
        nncf_logger.setLevel(level)


def conv_ops(model) -> dict[str, str]:
    """Convolution op names by layer key: the torch name of the weight constant they read
    (OpenVINO keeps the ONNX initializer's name as the constant's friendly name; a
    ConvTranspose loses its own name, so this is the one stable handle)."""
    ops = {}
    for op in model.get_ops():
        if op.get_type_name() in CONVOLUTIONS:
            source = op.input_value(1).get_node()
            while source.get_type_name() != "Constant" and source.get_input_size():
                source = source.input_value(0).get_node()  # through a Convert or a Reshape
            name = source.get_friendly_name()
            if name.endswith(".weight"):
                ops[name.removesuffix(".weight")] = op.get_friendly_name()
    return ops


def _save(ov, model, folder: Path, job: ExportJob) -> None:
    # Read back by the session: an fp16 artifact may compute in the device's native 16-bit type.
    for field, value in {**job.contract, "layout": "NCHW", "precision": job.precision}.items():
        model.set_rt_info(value, [CONTRACT_KEY, field])  # the embedded contract (crd_edge.artifacts.contract)
    folder.mkdir()
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=job.precision == "fp16")


def _int8_searched(ov, model, job: ExportJob, path: Path) -> dict:
    """NNCF int8 with the fewest convolutions kept in float that reach the search's aim on the
    calibration photos (crd_edge.export.int8_search)."""
    from crd_edge.export.int8_search import NORM_INPUTS, search
    ops = conv_ops(model)

    def quantize(keys: list[str]) -> Path:
        folder = job.work_dir / f"int8-{len(keys)}-float.openvino"
        quantized = _quantize(model.clone(), job.calibration, [ops[k] for k in keys if k in ops],
                              float_norm_inputs=NORM_INPUTS in keys)
        _save(ov, quantized, folder, job)
        return folder

    keys = {key for key in ops if not key.startswith("colour.")}  # in float already (_quantize)
    chosen, record = search(job.model, job.calibration, quantize, keys=keys, lead=(NORM_INPUTS,))
    shutil.move(chosen, path)  # work_dir may sit on another file system
    return record


def export(job: ExportJob, path: Path) -> ExportDetails:
    try:
        import openvino as ov
    except ImportError:
        raise missing_extra("openvino", "openvino") from None
    onnx_file = job.work_dir / "fp32.onnx"
    onnx_target.write_fp32(job, onnx_file)
    model = ov.convert_model(str(onnx_file))
    conversion = {"method": "openvino.convert_model from the fp32 ONNX graph"}
    if job.precision == "int8":
        conversion["method"] += f"; NNCF post-training int8, {len(job.calibration)} calibration images"
        conversion["accuracy_search"] = _int8_searched(ov, model, job, path)
    else:
        if job.precision == "fp16":
            conversion["method"] += ("; fp16 weights; computed in the device's native 16-bit type (bf16 on CPUs "
                                     "with AMX/AVX512-BF16, f16 on ARM and GPUs, else f32)")
        _save(ov, model, path, job)
    versions = {**onnx_target.versions(), "openvino": tool_version("openvino")}
    if job.precision == "int8":
        versions["nncf"] = tool_version("nncf")
    return ExportDetails("image", "output", "NCHW", versions, conversion)
