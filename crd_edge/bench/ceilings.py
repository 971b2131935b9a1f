"""Ceilings per precision: what a runtime itself reaches on one dense convolution in the
precision an artifact computes in, so that each row's share of its ceiling compares like with
like. The fp32 roofline (torch's matmul, :mod:`crd_edge.analysis.roofline`) stays the ceiling of
fp32 rows; an int8 row measured against it (or a bf16 row: OpenVINO runs fp16 files in bf16 on
CPUs with AMX) once read 521%.

The probe is a 1x1 convolution of 512 to 512 channels over 32x32 pixels (268 M MACs a call),
the shape of work a generator's convolutions do; int8 as quantize/dequantize pairs around it
(QDQ, which onnxruntime fuses into its integer convolution and OpenVINO into its low-precision
kernels), the weights per output channel. It is written to a temporary ONNX file (and an
OpenVINO IR for OpenVINO) and timed through the same runtime sessions as the artifacts.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS, SIDE = 512, 32
PROBE_MACS = CHANNELS * CHANNELS * SIDE * SIDE


def needs_own_ceiling(runtime: str, precision: str) -> bool:
    """Whether an artifact computes in something other than fp32 on a CPU: int8 everywhere;
    OpenVINO's fp16 files (bf16 or f16 where the CPU has them, fp32 otherwise)."""
    return precision.startswith("int8") or (runtime.startswith("openvino") and precision == "fp16")


def _probe_onnx(path: Path, int8: bool) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.05, (CHANNELS, CHANNELS, 1, 1)).astype(np.float32)
    shape = [1, CHANNELS, SIDE, SIDE]
    nodes, inits = [], []
    if int8:
        scale = np.abs(weight).reshape(CHANNELS, -1).max(1).astype(np.float32) / 127
        q = np.clip(np.round(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
        inits += [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scale, "w_scale"),
                  numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zero"),
                  numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "x_zero")]
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
                  helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
                  helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
                  helper.make_node("Conv", ["x_dq", "w"], ["y_f"]),
                  helper.make_node("QuantizeLinear", ["y_f", "x_scale", "x_zero"], ["y_q"]),
                  helper.make_node("DequantizeLinear", ["y_q", "x_scale", "x_zero"], ["y"])]
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["y"]))
    graph = helper.make_graph(nodes, "ceiling", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def measure_ceiling(runtime: str, precision: str, threads: int, seconds: float = 1.0) -> dict | None:
    """The runtime's best GMAC/s on the probe in ``precision`` (see the module docstring); None
    for a runtime or precision without a probe here (LiteRT: its int8 kernels need a converted
    file, which takes minutes; the row then shows no share rather than a wrong one)."""
    family = runtime.split(" (")[0]
    if family not in ("onnxruntime", "openvino") or not needs_own_ceiling(runtime, precision):
        return None
    int8 = precision.startswith("int8")
    with tempfile.TemporaryDirectory(prefix="crd-edge-ceiling-") as work:
        onnx_path = Path(work) / "probe.onnx"
        _probe_onnx(onnx_path, int8)
        if family == "onnxruntime":
            from crd_edge.runtime.onnxruntime_session import OnnxRuntimeSession
            session = OnnxRuntimeSession(onnx_path, threads=threads)
        else:
            import openvino as ov

            from crd_edge.runtime.openvino_session import OpenVINOSession
            model = ov.convert_model(str(onnx_path))
            model.set_rt_info(precision, ["crd_edge", "precision"])  # fp16: the session's 16-bit compute
            ov.save_model(model, str(Path(work) / "probe.openvino" / "model.xml"))
            session = OpenVINOSession(Path(work) / "probe.openvino", threads=threads)
        x = np.random.default_rng(1).normal(0, 1, (1, CHANNELS, SIDE, SIDE)).astype(np.float32)
        for _ in range(3):  # warm-up: kernel selection, allocation
            session.run(x)
        best, started = float("inf"), time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            session.run(x)
            best = min(best, time.perf_counter() - t)
    return {"gmacs_per_s": PROBE_MACS / best / 1e9, "precision": precision, "runtime": family, "threads": threads,
            "probe": f"1x1 conv {CHANNELS}->{CHANNELS} over {SIDE}x{SIDE}" + (" (QDQ int8)" if int8 else "")}
