"""TensorRT target: a TensorRT-ready ONNX graph plus the exact ``trtexec`` command that builds
the engine on the device (TensorRT needs an NVIDIA GPU and cannot be installed everywhere); the engine itself is
built through the ``tensorrt`` Python API when it is importable next to a GPU.

"TensorRT-ready" means: static shapes, opset 17 (read by TensorRT 8.6 to 10), reflection
padding rewritten into Slice + Concat (constant padding only in many TensorRT versions,
docs/method.md, "What these generators do to exporters"), every op in :data:`SUPPORTED_OPS`, and, for int8, explicit
quantisation (QDQ with symmetric activations), which TensorRT 8.6+ reads without a
calibration cache. fp16 is a builder flag, so the fp16 artifact is the fp32 graph with
``--fp16`` in its command.
"""

from __future__ import annotations

from pathlib import Path

from crd_edge.artifacts import FORMATS
from crd_edge.artifacts.contract import embed_onnx
from crd_edge.errors import UserError
from crd_edge.export import onnx as onnx_target
from crd_edge.export.base import ExportDetails, ExportJob, tool_version

REWRITES = ("reflect_pad_to_slices",)
# ONNX ops of these generators that TensorRT 8.6-10 parses natively (onnx-tensorrt's
# docs/operators.md support matrix; DepthToSpace/SpaceToDepth: the ``shuffle`` students' ends).
SUPPORTED_OPS = frozenset({"Conv", "ConvTranspose", "InstanceNormalization", "BatchNormalization",
                           "DepthToSpace", "SpaceToDepth",
                           "Relu", "LeakyRelu", "Tanh", "Add", "Sub", "Mul", "Div", "Concat", "Slice",
                           "Resize", "Constant", "Identity", "QuantizeLinear", "DequantizeLinear",
                           "Transpose", "Reshape", "Clip", "Sigmoid", "Abs", "Neg", "Exp", "Log", "Sqrt",
                           "Reciprocal", "Atanh", "Pow", "Max", "Min", "ReduceMean", "Cast"})
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack puts it; on a desktop it is on PATH


def engine_name(onnx_name: str) -> str:
    trt = FORMATS["tensorrt"]
    return onnx_name.removesuffix(trt.suffix) + trt.device_suffixes[0]


def trtexec_command(onnx_name: str, precision: str) -> list[str]:
    engine = engine_name(onnx_name)
    flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
    return [TRTEXEC, f"--onnx={onnx_name}", f"--saveEngine={engine}", *flags]


def check_graph(path: Path) -> dict:
    """Static shapes and supported ops, read from the file; a problem is a UserError."""
    import onnx
    name = path.name.removeprefix(".partial-")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    ops = sorted({node.op_type for node in model.graph.node})
    unsupported = [op for op in ops if op not in SUPPORTED_OPS]
    if unsupported:
        raise UserError(f"{name}: ops {unsupported} are not TensorRT-ready; no rewrite for them yet")
    dynamic = [v.name for v in [*model.graph.input, *model.graph.output]
               if any(not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)]
    if dynamic:
        raise UserError(f"{name}: dynamic dimensions in {dynamic}; TensorRT-ready graphs are static")
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    return {"ops": ops, "pad_nodes": len(pads), "static_shapes": True}


def build_engine(onnx_path: Path, engine_path: Path, precision: str) -> str:
    """Build the engine with the TensorRT Python API; returns what happened, never raises for a
    machine without TensorRT or a GPU (the ONNX + command are the portable artifact)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or the bindings failing to find their libraries
        return f"not built here: tensorrt not importable ({type(exc).__name__}); run the trtexec command on the device"
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path.name}: TensorRT's ONNX parser rejected it: {errors[:200]}")
    config = builder.create_builder_config()
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise UserError(f"{onnx_path.name}: TensorRT could not build an engine (see its log above)")
    engine_path.write_bytes(bytes(engine))
    return f"built {engine_path.name} with TensorRT {trt.__version__}"


def export(job: ExportJob, path: Path) -> ExportDetails:
    if job.precision == "int8":
        fp32 = job.work_dir / "fp32.onnx"
        onnx_target.write_fp32(job, fp32)
        conversion = onnx_target.to_int8_searched(job, fp32, path, symmetric=True)
        conversion["method"] += " (explicit quantisation for TensorRT)"
    else:
        onnx_target.write_fp32(job, path)
        conversion = {"method": "torch.onnx.export, float32 graph; precision is set when the engine is built"}
    embed_onnx(path, {**job.contract, "layout": "NCHW"})
    final_name = path.name.removeprefix(".partial-")
    conversion.update(check_graph(path), trtexec=trtexec_command(final_name, job.precision),
                      engine=build_engine(path, path.parent / engine_name(final_name), job.precision))
    versions = {**onnx_target.versions(), "tensorrt": tool_version("tensorrt")}
    return ExportDetails("image", "output", "NCHW", versions, conversion)


def verify(path: Path, job: ExportJob, images, reference) -> dict:
    """The graph handed to TensorRT, run by onnxruntime in fp32: engine numerics need TensorRT."""
    from crd_edge.export.verify import verify_artifact
    result = verify_artifact(path, images, reference, job.precision)
    return {**result, "runtime": "onnxruntime, fp32 (the graph handed to TensorRT; engine numerics need TensorRT)"}
