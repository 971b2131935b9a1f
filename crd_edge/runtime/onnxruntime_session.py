"""ONNX Runtime session (CPU by default; CUDA when asked for and available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crd_edge._deps import import_onnxruntime
from crd_edge.runtime.base import summarise_ops
from crd_edge.errors import UserError


class OnnxRuntimeSession:
    """``constants`` are extra inputs fed unchanged on every call (a style vector, say); the image
    is the one input they do not name. ``spinning`` False stops idle worker threads from spinning
    after each run, for a session that runs beside torch (a teacher labelling views)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None,
                 constants: dict[str, np.ndarray] | None = None, spinning: bool = True, what: str | None = None) -> None:
        what = what or str(path)
        ort = import_onnxruntime(f"{what}: running .onnx files")
        self.path = Path(path)
        self.constants = dict(constants or {})
        self._open = (threads, providers)  # op_profile opens a second, profiling session alike
        options = ort.SessionOptions()
        # Errors only: its warnings ("Removing initializer ..." for every int8 file) are about
        # graph clean-ups it does itself, and they would interleave with our tables.
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise UserError(f"{what}: not a loadable ONNX model, onnxruntime cannot load it "
                            f"({str(exc).splitlines()[0][:120]})") from None
        used = self.session.get_providers()[0]
        if used != "CPUExecutionProvider":  # say which accelerator ran it
            self.backend = f"onnxruntime ({used.removesuffix('ExecutionProvider')})"
        inputs = self.session.get_inputs()
        images = [i for i in inputs if i.name not in self.constants]
        unknown = sorted(set(self.constants) - {i.name for i in inputs})
        if len(images) != 1 or len(images[0].shape) != 4 or unknown:
            expected = " plus " + ", ".join(self.constants) if self.constants else ""
            raise UserError(f"{what}: expected one NCHW image input{expected}, "
                            f"found {({i.name: i.shape for i in inputs})}")
        self.input_name = images[0].name
        self.input_shape = tuple(images[0].shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32), **self.constants}
        return self.session.run(None, feed)[0]

    def op_profile(self, x: np.ndarray, runs: int = 10) -> list[dict]:
        """Time per op type and call, from onnxruntime's own profiler (a second session with
        profiling on, so the measured one stays unprofiled); each row says which execution
        provider ran it, so an op that fell back from an accelerator to the CPU shows."""
        import json
        import tempfile

        ort = import_onnxruntime("profiling .onnx files")
        threads, providers = self._open
        options = ort.SessionOptions()
        # Errors only: its warnings ("Removing initializer ..." for every int8 file) are about
        # graph clean-ups it does itself, and they would interleave with our tables.
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32), **self.constants}
        with tempfile.TemporaryDirectory() as tmp:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            session = ort.InferenceSession(str(self.path), options, providers=providers or ["CPUExecutionProvider"])
            for _ in range(runs + 1):
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
        # The first run is a warm-up (allocations, kernel selection): its nodes are left out.
        first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"], default=None)
        after = first["ts"] + first["dur"] if first else -1
        return summarise_ops(
            [(e["args"]["op_name"], e["args"].get("provider", "?").removesuffix("ExecutionProvider"), e["dur"] / 1e3)
             for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
             and e["ts"] >= after],
            runs)

