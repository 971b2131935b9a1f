"""Core ML target: an ML Program (``.mlpackage`` folder) converted with coremltools from a
TorchScript trace; fp16 and int8 (weight-only) variants. Core ML predicts only on macOS, so on
other systems :func:`inspect` checks the saved spec (I/O, weight precision, ops) instead."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
import uuid
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from crd_edge.artifacts.contract import KEY as CONTRACT_KEY
from crd_edge.errors import UserError
from crd_edge.export.base import ExportDetails, ExportJob, missing_extra, tool_version

# coremltools 9 converts ReflectionPad2d (MIL pad, mode "reflect"), InstanceNorm2d (MIL
# instance_norm) and ConvTranspose2d(k3, s2, p1, output_padding=1) (conv_transpose + crop) as
# they are, from a trace and from torch.export alike: no rewrite needed (checked with 9.0).
REWRITES: tuple[str, ...] = ()

# iOS 16 / macOS 13 is the oldest target that stores int8 weights (constexpr_affine_dequantize);
# all precisions share it so every artifact has the same OS floor.
DEPLOYMENT_TARGET = "iOS16"
# coremltools' default: smaller tensors (depthwise kernels, biases) stay fp16, where int8 would
# save a few bytes and cost a dequantisation.
INT8_WEIGHT_THRESHOLD = 2048
# Loggers that print at import and conversion time (coremltools, the torchao it imports, torch).
_CHATTY_LOGGERS = ("coremltools", "torchao", "torch")
_PREDICTION_NOTE = "not verified: Core ML prediction runs only on macOS"
# MIL proto data types -> precision labels; constexpr ops -> the attribute that holds the weights.
_DTYPES = {"FLOAT32": "fp32", "FLOAT16": "fp16", "INT8": "int8"}
_COMPRESSED_DATA = {"constexpr_affine_dequantize": "quantized_data"}
_ALLOWED_WEIGHTS = {"fp32": {"fp32"}, "fp16": {"fp16"}, "int8": {"int8", "fp16"}}


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet(notes: list[str]):
    """Collect what the converter prints (log warnings, Python warnings, tqdm progress bars on
    stderr) into ``notes``, one line per distinct message, instead of flooding the CLI."""
    collector = _Collector()
    saved = {}
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        saved[logger] = (logger.handlers, logger.propagate)
        logger.handlers, logger.propagate = [collector], False
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("always")  # every conversion records its own warnings
            warnings.simplefilter("ignore", ResourceWarning)  # coremltools' temp dirs, not the model
            yield
    finally:
        for logger, (handlers, propagate) in saved.items():
            logger.handlers, logger.propagate = handlers, propagate
        lines = [*collector.messages, *(str(w.message) for w in caught)]
        notes.extend(dict.fromkeys(line.splitlines()[0][:200] for line in lines if line.strip()))


def _import_coremltools():
    try:
        with _quiet([]):  # import-time noise: unsupported scikit-learn, no native runtime off macOS
            import coremltools
            import coremltools.optimize.coreml  # noqa: F401  (int8 weight quantisation)
    except ImportError:
        raise missing_extra("coreml", "coremltools") from None
    return coremltools


def _untested_torch(ct) -> list[str]:
    """The converter's "torch X has not been tested" warning as a note. It is logged once per
    process at import, which may have happened elsewhere, so it is rebuilt from the same
    (private) constant; none if a future coremltools drops it."""
    from packaging.version import Version
    tested = getattr(ct._deps, "_TORCH_MAX_VERSION", None)
    if tested is None or Version(torch.__version__.split("+")[0]) <= Version(tested):
        return []
    return [f"coremltools {ct.__version__} is tested with torch up to {tested}; converted with "
            f"torch {torch.__version__} (the converter warns that this torch is untested)"]


def _conversion_error(exc: Exception) -> UserError:
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    op = re.search(r"op '([^']+)'", line)
    where = f" at torch op {op.group(1)!r}" if op else ""
    return UserError(f"Core ML conversion failed{where}: {line}")


def _convert(ct, job: ExportJob, notes: list[str]):
    shape = (1, 3, job.height, job.width)
    precision = ct.precision.FLOAT32 if job.precision == "fp32" else ct.precision.FLOAT16
    try:
        with _quiet(notes), torch.no_grad():
            # A trace, not torch.export: Apple calls the TorchScript path the stable and faster
            # one (export is beta in coremltools 9); both convert these generators to the same
            # ops. No check_trace: these generators have no data-dependent control flow, and
            # the check runs the model twice more (seconds for an ngf-64 teacher at 256 px).
            traced = torch.jit.trace(job.model.eval(), job.example(), check_trace=False)
            # float32 I/O at every precision (as the ONNX target keeps): fp16 compute on iOS 16+
            # would otherwise make the interface fp16 too.
            model = ct.convert(traced, convert_to="mlprogram", compute_precision=precision,
                               minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                               inputs=[ct.TensorType(name="image", shape=shape, dtype=np.float32)],
                               outputs=[ct.TensorType(name="output", dtype=np.float32)])
            if job.precision == "int8":
                model = _to_int8(ct, model)
    except Exception as exc:  # coremltools raises plain NotImplementedError/ValueError/RuntimeError
        raise _conversion_error(exc) from exc
    return model


def _to_int8(ct, model):
    config = ct.optimize.coreml.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel",
        weight_threshold=INT8_WEIGHT_THRESHOLD)
    return ct.optimize.coreml.linear_quantize_weights(
        model, config=ct.optimize.coreml.OptimizationConfig(global_config=config))


def _describe(model, job: ExportJob) -> None:
    """Descriptions Xcode shows for the model's interface."""
    model.short_description = f"crd-edge image-to-image generator ({job.precision})"
    model.input_description["image"] = f"RGB image, float32 NCHW (1, 3, {job.height}, {job.width}), values in [-1, 1]"
    model.output_description["output"] = "generated RGB image, same shape and range as the input"


def _save_reproducibly(model, path: Path) -> None:
    """Save so that one model always gives the same bytes: the manifest recognises a re-export
    of the same model by its hash. coremltools stamps the day of conversion into the metadata
    and names the package's items with random UUIDs; the date is dropped and the UUIDs are
    derived from the items' paths (they only link the root model to its entry)."""
    model.user_defined_metadata.pop("com.github.apple.coremltools.conversion_date", None)
    model.save(str(path))
    manifest_file = path / "Manifest.json"
    manifest = json.loads(manifest_file.read_text())
    ids = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, entry["path"]))
           for old, entry in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {ids[old]: entry for old, entry in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = ids[manifest["rootModelIdentifier"]]
    # Byte for byte what coremltools' own package library writes when it opens the package
    # (inspect does), so opening it later leaves the hash alone.
    manifest_file.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def _conversion(job: ExportJob, notes: list[str]) -> dict:
    compute = "FLOAT32" if job.precision == "fp32" else "FLOAT16"
    conversion = {
        "method": f"torch.jit.trace -> coremltools.convert (mlprogram, minimum_deployment_target "
                  f"{DEPLOYMENT_TARGET} / macOS13), compute_precision {compute}",
        "io": "float32 MultiArray 'image' (1,3,H,W) in [-1,1] -> 'output'. For camera pipelines an "
              "ImageType input (scale 2/255, bias -1) could take CVPixelBuffers directly; not used, so "
              "every target shares the same tensor contract",
        "notes": notes,
    }
    if job.precision == "int8":
        conversion["method"] += (
            "; coremltools.optimize.coreml.linear_quantize_weights on that fp16 model (Apple's "
            "documented flow): int8 linear symmetric per-channel weights, fp16 activations, no "
            f"calibration; tensors under {INT8_WEIGHT_THRESHOLD} elements (coremltools' default "
            "weight_threshold) stay fp16")
    return conversion


def export(job: ExportJob, path: Path) -> ExportDetails:
    ct = _import_coremltools()
    notes = _untested_torch(ct)
    model = _convert(ct, job, notes)
    _describe(model, job)
    model.user_defined_metadata.update(
        {f"{CONTRACT_KEY}.{k}": v for k, v in {**job.contract, "layout": "NCHW"}.items()})
    _save_reproducibly(model, path)
    versions = {"torch": tool_version("torch"), "coremltools": tool_version("coremltools")}
    return ExportDetails("image", "output", "NCHW", versions, _conversion(job, notes))


# ---- spec-only verification (Linux; on macOS the orchestrator runs real predictions) ----

def _features(features) -> list[dict]:
    from coremltools.proto import FeatureTypes_pb2
    names = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    return [{"name": f.name, "shape": list(f.type.multiArrayType.shape),
             "dtype": names.Name(f.type.multiArrayType.dataType)} for f in features]


def _tensor(value) -> tuple[str, int]:
    """(MIL data type name, element count) of a constant value."""
    from coremltools.proto import MIL_pb2
    tensor = value.type.tensorType
    count = 1
    for dim in tensor.dimensions:
        count *= dim.constant.size
    return MIL_pb2.DataType.Name(tensor.dataType), count


def _weights_and_ops(spec) -> tuple[dict[str, int], dict[str, int]]:
    """Weight elements per precision and op counts of the program's main function. Weights are
    float constants of rank >= 1 and the quantised data of constexpr (compressed weight) ops;
    integer constants (pads, strides, axes) and quantisation scales are not."""
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    weights: Counter = Counter()
    for op in block.operations:
        if op.type == "const":
            value = op.attributes["val"]
            dtype, count = _tensor(value)
            if value.type.tensorType.rank >= 1 and "FLOAT" in dtype:
                weights[_DTYPES.get(dtype, dtype.lower())] += count
        elif op.type in _COMPRESSED_DATA:
            dtype, count = _tensor(op.attributes[_COMPRESSED_DATA[op.type]])
            weights[_DTYPES.get(dtype, dtype.lower())] += count
    ops = Counter(op.type for op in block.operations)
    return dict(weights), dict(ops.most_common())


def _precision_label(weights: dict[str, int]) -> str:
    """The narrowest weight type present: an int8 model keeps its small tensors in fp16."""
    for label in ("int8", "fp16", "fp32"):
        if weights.get(label):
            return label
    return "none"


def _problems(job: ExportJob, inputs, outputs, weights) -> list[str]:
    shape = [1, 3, job.height, job.width]
    expected = {"inputs": [{"name": "image", "shape": shape, "dtype": "FLOAT32"}],
                "outputs": [{"name": "output", "shape": shape, "dtype": "FLOAT32"}]}
    problems = [f"{key}: {actual} (expected {expected[key]})"
                for key, actual in (("inputs", inputs), ("outputs", outputs)) if actual != expected[key]]
    allowed = _ALLOWED_WEIGHTS[job.precision]
    if set(weights) - allowed or _precision_label(weights) != job.precision:
        problems.append(f"weights: {weights} elements per type (expected {job.precision}"
                        f"{' with fp16 for small tensors' if job.precision == 'int8' else ''})")
    return problems


def inspect(path: Path, job: ExportJob) -> dict:
    """Check the saved package against ``job`` without running it: I/O names, shapes and types,
    weight precision, op counts."""
    ct = _import_coremltools()
    result = {"status": "failed", "runtime": "coremltools spec (prediction needs macOS)",
              "numerics": _PREDICTION_NOTE}
    try:
        with _quiet([]):
            spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:  # a missing or corrupt package: report it like any other mismatch
        return {**result, "problems": [f"{path}: coremltools cannot read it ({str(exc).splitlines()[0][:200]})"]}
    inputs, outputs = _features(spec.description.input), _features(spec.description.output)
    weights, ops = _weights_and_ops(spec)
    problems = _problems(job, inputs, outputs, weights)
    return {**result, "status": "failed" if problems else "spec-verified", "inputs": inputs,
            "outputs": outputs, "weight_precision": _precision_label(weights),
            "weight_elements": weights, "ops": ops, "problems": problems}


def verify(path: Path, job: ExportJob, images, reference) -> dict:
    """The export loop's check: a prediction compared with torch on macOS, the spec elsewhere."""
    if sys.platform == "darwin":
        from crd_edge.export.verify import verify_artifact
        return verify_artifact(path, images, reference, job.precision)
    return inspect(path, job)
