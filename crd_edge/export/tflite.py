"""TFLite (LiteRT) target: litert-torch conversion, ai-edge-quantizer precisions, NHWC I/O.

The fp32 file comes from litert-torch (torch.export -> StableHLO -> TFLite flatbuffer), with
litert-torch's own channel-last wrapper so the file takes and gives (1, H, W, 3) like a camera
frame. Every other precision is ai-edge-quantizer applied to that fp32 file:

* ``fp16``          fp16 weights (dequantized to float at load), float compute, float I/O;
* ``int8``          full-integer static w8a8: per-channel int8 weights, int8 activations
                    calibrated on ``job.calibration``, int8 input and output tensors; where
                    that misses the accuracy search's aim (crd_edge.export.int8_search), only
                    the convolutions stay int8 (float I/O), and then the most sensitive of
                    those go to float too, one search step at a time;
* ``int8-dynamic``  int8 weights, activations quantized on the fly by the kernels, float I/O;
* ``int8-weight``   int8 weights dequantized before float compute, float I/O.

Full-integer int8 is for accelerators that need it (NPUs, DSPs), not for accuracy: on the
trained mobile student it measured 21-23 dB against torch on the held-out photos (below the
30 dB bar), because InstanceNorm's statistics and the wide pre-norm activations (the upsampling
convs' outputs span about [-430, 780]) do not fit one int8 scale per tensor; ai-edge-quantizer's
MSE range search did not help. Hence the fallback above. ``int8-dynamic`` (41 dB) and
``int8-weight`` (65 dB) pass.

Both rewrites are needed: ``ConvTranspose2d(k3, output_padding=1)`` does not legalise in
litert-torch, and ``ReflectionPad2d`` becomes MIRROR_PAD, which XNNPACK does not take: each one
splits the delegated graph (21 partitions for the default student instead of 5), and the
slice form ran about 1.6x faster at 256x256 on 2 threads (70 vs 110 ms), with identical output.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crd_edge.artifacts.contract import embed_tflite
from crd_edge.errors import UserError
from crd_edge.export.base import ExportDetails, ExportJob, missing_extra, tool_version
from crd_edge.export.int8_search import NON_CONVOLUTIONS
from crd_edge.export.rewrites import REWRITES as REWRITE_TABLE

REWRITES = ("convtranspose_k3_to_k4", "reflect_pad_to_slices", "narrow_conv_to_space_to_depth")  # last: 37.2 -> 31.9 ms

SIGNATURE = "serving_default"  # litert-torch's default signature key
INPUT_NAME, OUTPUT_NAME = "image", "output"  # the signature's names, as in every other format
RECIPES = {  # precision -> ai_edge_quantizer.recipe function (fp16 has none: see _recipe)
    "int8": "static_wi8_ai8",
    "int8-dynamic": "dynamic_wi8_afp32",
    "int8-weight": "weight_only_wi8_afp32",
}


def export(job: ExportJob, path: Path) -> ExportDetails:
    """Write ``job.model`` at ``job.precision`` to ``path``; fp32 intermediates go to work_dir."""
    fp32_path = path if job.precision == "fp32" else job.work_dir / "fp32.tflite"
    _convert(job, fp32_path)
    conversion = {"method": "litert_torch.convert (torch.export -> StableHLO -> TFLite), fp32",
                  "channel_last_io": "litert_torch.to_channel_last_io: NHWC input and output"}
    if job.precision != "fp32":
        conversion["quantization"] = _quantize(fp32_path, path, job)
    inp, out = _io_details(path)
    conversion["io"] = {"input": _tensor_type(inp), "output": _tensor_type(out),
                        "tensors": {"input": inp["name"], "output": out["name"]},
                        "signature": SIGNATURE}
    embed_tflite(path, {**job.contract, "layout": "NHWC"})
    versions = {name: tool_version(name)
                for name in ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert")}
    return ExportDetails(INPUT_NAME, OUTPUT_NAME, layout="NHWC", tool_versions=versions, conversion=conversion)


def _convert(job: ExportJob, path: Path) -> None:
    try:
        import litert_torch
    except ImportError:
        raise missing_extra("tflite", "litert-torch") from None
    wrapped = _Named(litert_torch.to_channel_last_io(job.model, args=[0], outputs=[0])).eval()
    sample = job.example().permute(0, 2, 3, 1)
    with _quiet_litert_torch():
        try:
            edge_model = litert_torch.convert(wrapped, sample_kwargs={INPUT_NAME: sample})
        except Exception as exc:  # litert-torch raises bare ValueError/RuntimeError with MLIR dumps
            raise UserError(_conversion_failure(job.model, exc)) from exc
        edge_model.export(str(path))


class _Named(torch.nn.Module):
    """The signature every format shares: one input ``image``, one output ``output`` (ONNX and
    OpenVINO name theirs so), instead of litert-torch's ``args_0`` and ``output_0``."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {OUTPUT_NAME: self.inner(image)}


@contextlib.contextmanager
def _quiet_litert_torch():
    """Hide litert-torch's ~40 progress lines per conversion; restore the caller's setting."""
    key, previous = "LITERT_TORCH_SHOW_PROGRESS", os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ[key] = "n"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _conversion_failure(model: nn.Module, exc: Exception) -> str:
    """One line out of the converter's message: the op that failed, the layers behind it, the fix."""
    text = str(exc)
    error = re.search(r"error: (.*?)(?::\s*%|\n|$)", text)
    what = error.group(1).strip() if error else (text.splitlines() or [type(exc).__name__])[0][:160]
    # A convolution with lhs_dilation is a transposed conv; the k3/output_padding=1 form is the
    # one litert-torch cannot legalise, and the exact k4 rewrite fixes it.
    if "mhlo.convolution" in what and "lhs_dilation" in text:
        match = REWRITE_TABLE["convtranspose_k3_to_k4"][0]
        layers = [name for name, m in model.named_modules() if match(m)]
        layers = layers or [name for name, m in model.named_modules() if isinstance(m, nn.ConvTranspose2d)]
        return (f"litert-torch cannot convert ConvTranspose2d layer(s) {', '.join(layers)} ({what}); "
                "apply the 'convtranspose_k3_to_k4' rewrite (crd_edge.export.rewrites) or build the "
                "student with upsample='convt4'")
    where = re.search(r"([\w./-]+\.py:\d+)", text)
    at = f" at {where.group(1)}" if where else ""
    return (f"litert-torch cannot convert this model: {what}{at}; replace that layer with one the "
            "TFLite builtins support (see crd_edge.export.rewrites) or export to ONNX instead")


CONVOLUTIONS = ("CONV_2D", "CONV_2D_TRANSPOSE", "DEPTHWISE_CONV_2D")


def _recipe(precision: str, float_units: list[str] = (), model: nn.Module | None = None) -> list:
    """The precision's recipe; for int8, ``float_units`` (layer keys of ``model``, or
    NON_CONVOLUTIONS) stay in float (the accuracy search's choice)."""
    from ai_edge_quantizer import qtyping, recipe, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    manager = recipe_manager.RecipeManager()
    if precision == "fp16":  # weight-only "quantization" to float16 is the FLOAT_CASTING algorithm
        manager.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16,
                                       algorithm_key=AlgorithmName.FLOAT_CASTING)
        return manager.get_quantization_recipe()
    if precision != "int8" or not float_units:
        return getattr(recipe, RECIPES[precision])()
    # An op that no entry matches is not quantised; where entries overlap, the later one wins.
    ops = [getattr(qtyping.TFLOperationName, name) for name in CONVOLUTIONS] \
        if NON_CONVOLUTIONS in float_units else [qtyping.TFLOperationName.ALL_SUPPORTED]
    for op in ops:
        manager.add_static_config(".*", op, activation_num_bits=8, weight_num_bits=8)
    for key in float_units:
        if key != NON_CONVOLUTIONS:
            manager.add_quantization_config(scope_regex(model, key), qtyping.TFLOperationName.ALL_SUPPORTED,
                                            algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def scope_regex(model: nn.Module, key: str) -> str:
    """A regex for the scope ai-edge-quantizer matches (the op's output tensor names) of the
    layer ``key`` (``model.15.conv_block.3``). litert-torch names tensors after the modules they
    run in, one ``<module class>_<attribute>`` level per module under the wrapped root, but
    leaves out a Sequential that its parent iterates instead of calling: those levels are
    optional here."""
    module, pattern = model, ""
    for part in key.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
        level = re.escape(f"{type(module).__module__}.{type(module).__name__}_{part}")
        pattern += f"(?:{level}/)?" if isinstance(module, nn.Sequential) else f"{level}/"
    return f"(?:_wrapped/|;){pattern[:-1]};"


def _quantize(fp32_path: Path, path: Path, job: ExportJob) -> dict:
    """Apply the precision's recipe to the fp32 file; returns what goes into the manifest."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise missing_extra("tflite", "ai-edge-quantizer") from None
    if job.precision == "int8":
        return _int8_searched(fp32_path, path, job)
    recipe = _recipe(job.precision)
    _apply(quantizer, recipe, fp32_path, path, job)
    name = RECIPES.get(job.precision, "weight-only fp16 (float_casting)")
    return {"tool": "ai-edge-quantizer", "recipe_name": name, "recipe": recipe}


def _apply(quantizer, recipe: list, fp32_path: Path, path: Path, job: ExportJob, calibration=None):
    """Quantise ``fp32_path`` by ``recipe`` into ``path``; returns the calibration it used (the
    activation ranges of every tensor of the float file, reusable with another recipe)."""
    q = quantizer.Quantizer(str(fp32_path), recipe)
    with warnings.catch_warnings():  # it keeps every tensor on purpose, and warns that it does
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        if q.need_calibration and calibration is None:
            if job.calibration is None:
                raise UserError(f"--precision {job.precision}: needs calibration images")
            calibration = _calibrate(q, fp32_path, job.calibration)
        result = q.quantize(calibration if q.need_calibration else None, enable_progress_bar=False,
                            enable_progress_report=False)
    result.export_model(str(path), overwrite=True)
    return calibration


def _int8_searched(fp32_path: Path, path: Path, job: ExportJob) -> dict:
    """Full-integer int8, or, short of the search's aim, the fewest units in float that reach it."""
    from ai_edge_quantizer import quantizer
    from crd_edge.export.int8_search import search
    recipes, ranges = {}, {}

    def quantize(units: list[str]) -> Path:
        candidate = job.work_dir / f"int8-{len(units)}-float.tflite"
        recipes[candidate] = _recipe("int8", units, job.model)
        # The first (full-integer) recipe calibrates every tensor; the others reuse its ranges.
        ranges["all"] = _apply(quantizer, recipes[candidate], fp32_path, candidate, job, ranges.get("all"))
        return candidate

    chosen, record = search(job.model, job.calibration, quantize, lead=(NON_CONVOLUTIONS,))
    shutil.move(chosen, path)  # work_dir may sit on another file system
    name = (RECIPES["int8"] if not (record["float_ops"] or record["float_layers"])
            else "static_wi8_ai8 with float layers (accuracy search)")
    return {"tool": "ai-edge-quantizer", "recipe_name": name, "recipe": recipes[chosen],
            "calibration_images": len(job.calibration), "accuracy_search": record}


def _calibrate(q, fp32_path: Path, images) -> dict:
    """Activation ranges (min/max) of the fp32 file over ``images`` (N, 3, H, W) in [-1, 1]."""
    from ai_edge_litert.interpreter import Interpreter
    (arg,) = Interpreter(model_path=str(fp32_path)).get_signature_list()[SIGNATURE]["inputs"]
    samples = [{arg: img.permute(1, 2, 0)[None].numpy().astype(np.float32)} for img in images]
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar would end up in the table
        return q.calibrate({SIGNATURE: samples}, num_threads=os.cpu_count() or 1)


def _io_details(path: Path) -> tuple[dict, dict]:
    """The written file's own input and output tensors (names, dtypes, quantisation)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise missing_extra("tflite", "ai-edge-litert") from None
    interpreter = Interpreter(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    return inp, out


def _tensor_type(tensor: dict) -> dict:
    """dtype, plus scale and zero point for a quantised tensor (a full-integer file's I/O):
    real = (q - zero_point) * scale, which an app needs to feed camera frames."""
    dtype = np.dtype(tensor["dtype"]).name
    if dtype == "float32":
        return {"dtype": dtype}
    scale, zero_point = tensor["quantization"]
    return {"dtype": dtype, "scale": float(scale), "zero_point": int(zero_point)}
