"""OpenVINO session (CPU): an exported ``.openvino`` folder or a bare ``model.xml``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crd_edge.errors import UserError
from crd_edge.runtime.base import summarise_ops


class OpenVINOSession:
    """``precision_hint`` None: f32 compute for fp32 and int8 artifacts (without it, CPUs with
    bf16/AMX units silently compute in bf16, about 2-3 significant digits, and fp32 artifacts
    would fail their verification); for fp16 artifacts the device's own fastest 16-bit type
    (bf16 with AMX: the student ran 2.2x faster than in f32, 64.5 dB from torch fp32)."""

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "CPU",
                 precision_hint: str | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise UserError("running OpenVINO models needs openvino: pip install 'crd-edge[openvino]'") from None
        self.path = Path(path)
        xml = self.path / "model.xml" if self.path.is_dir() else self.path
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
            key = ["crd_edge", "precision"]
            self.precision = model.get_rt_info(key).astype(str) if model.has_rt_info(key) else "fp32"
            if precision_hint is None and self.precision != "fp16":
                precision_hint = "f32"
            config = {"INFERENCE_PRECISION_HINT": precision_hint} if precision_hint else {}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            self.compiled = core.compile_model(model, device, config)
            self._open = (core, model, device, config)  # op_profile compiles a profiling copy alike
        except Exception as exc:  # OpenVINO raises plain RuntimeErrors
            raise UserError(f"{self.path}: OpenVINO cannot load it ({str(exc).splitlines()[0][:120]})") from None
        computed = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16, f16
        self.backend = "openvino" if computed == "f32" else f"openvino ({computed})"
        if device != "CPU":
            self.backend += f" on {device}"
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.input(0).get_partial_shape()  # dynamic height and width read as names
        self.input_shape = tuple(d.get_length() if d.is_static else name
                                 for d, name in zip(shape, ("batch", "channels", "height", "width")))

    def run(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32).copy()

    def op_profile(self, x: np.ndarray, runs: int = 10) -> list[dict]:
        """Time per op type and call from OpenVINO's performance counters (a second compiled
        model with them on); "where" is the kernel OpenVINO chose (its ISA and precision)."""
        core, model, device, config = self._open
        request = core.compile_model(model, device, {**config, "PERF_COUNT": True}).create_infer_request()
        feed = {0: np.ascontiguousarray(x, dtype=np.float32)}
        request.infer(feed)  # warm-up: its counters are replaced by the next inference's
        samples = []
        for _ in range(runs):
            request.infer(feed)
            samples += [(info.node_type, info.exec_type, info.real_time.total_seconds() * 1e3)
                        for info in request.get_profiling_info()
                        if info.status.name == "EXECUTED"]
        return summarise_ops(samples, runs)


def torch_module_on_openvino(module, example, size: int):
    """A torch module converted in memory for NCHW batches of ``size`` px, and its compilations
    on this CPU, fastest first: ``(version, [(precision, hint, run), ...])`` where ``run`` maps a
    float32 NCHW tensor batch to a tensor. The 16-bit one ("bf16/f16": bf16 where the CPU has
    AMX or AVX512-BF16, else f16) comes first, fp32 last; a hint the CPU lacks is left out. The
    caller decides which is good enough (the view labeller checks each against torch). Raises
    ImportError without OpenVINO and RuntimeError (one line) when the conversion fails."""
    import openvino as ov
    import torch
    try:
        model = ov.convert_model(module, example_input=example[:1], input=[(-1, 3, size, size)])
    except Exception as exc:  # noqa: BLE001 - OpenVINO's converter raises many kinds
        raise RuntimeError(str(exc).splitlines()[0][:100] if str(exc).strip() else type(exc).__name__) from None
    core = ov.Core()
    half = "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f16"
    compiled = []
    for precision, hint in (("bf16/f16", half), ("fp32", "f32")):
        try:
            program = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        except Exception:  # noqa: BLE001 - a hint the CPU lacks: the next one
            continue
        compiled.append((precision, hint, lambda batch, c=program: torch.from_numpy(c(batch.numpy())[0])))
    return ov.__version__.split("-")[0], compiled


def measuring_network_on_openvino(module, example):
    """A frozen network that only measures (Inception-v3, VGG-16), converted in memory and
    compiled for this CPU in fp32 for ``example``'s shape with any batch size: ``run(x)`` maps a
    float32 NCHW tensor to its outputs (numpy arrays, in the module's output order). On a 2-core
    EPYC it ran 1.5x (VGG-16) and 1.6x (Inception) faster than torch, features within 1e-5.
    None without OpenVINO, when the conversion fails, or when its outputs on ``example`` differ
    from torch's: the caller keeps torch."""
    try:
        import openvino as ov
    except ImportError:
        return None
    import warnings

    import torch
    try:
        with warnings.catch_warnings():  # the tracer's notes on the networks' input checks
            warnings.simplefilter("ignore")
            model = ov.convert_model(module, example_input=example, input=[(-1, *example.shape[1:])])
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception:  # noqa: BLE001 - OpenVINO's converter raises many kinds: torch it is
        return None

    def run(x):
        result = compiled(np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32))
        return [np.asarray(result[output]) for output in compiled.outputs]

    with torch.no_grad():
        expected = module(example)
    expected = list(expected.values()) if isinstance(expected, dict) else [expected]
    got = run(example)
    if len(got) != len(expected) or any(
            a.shape != tuple(b.shape) or np.abs(a - b.numpy()).max() > 1e-3 * max(float(b.abs().max()), 1.0)
            for a, b in zip(got, expected)):
        return None
    return run
