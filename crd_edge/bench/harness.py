"""The latency harness: one artifact, one process, one JSON measurement.

It runs in a fresh process for every artifact (``python -m crd_edge.bench.harness ...``), so
that peak RSS, load time and thread settings belong to that model alone; the local runner
starts it with subprocess, the ssh runner starts the same command on the remote machine.

What it measures (all wall-clock, ``time.perf_counter``):

* ``load_ms``: opening the session (file read, graph compilation, delegate set-up);
* ``first_inference_ms``: the first call (lazy allocation, kernel selection, JIT);
* ``latency_ms``: after ``warmup`` calls, ``runs`` timed calls or until ``max_seconds`` has
  passed, whichever comes first (at least 5): p50/p90/p99/mean/std/min/max;
* ``prepost_ms``: the camera-frame work around the model, timed apart from it: a 640x480
  uint8 BGR frame (of the size asked, for a dynamic artifact; ``frame`` says which)
  centre-cropped, resized and scaled to the model's NCHW float input, and the NCHW output
  turned back into a uint8 BGR image (OpenCV when installed, else numpy);
* ``peak_rss_mb``: the process's peak resident memory (model + runtime + interpreter);
* ``matmul``: the roofline: the best dense fp32 matmul throughput torch reaches with the same
  thread count in this process, so that each model's efficiency (true MACs per second as a
  fraction of it) is measured against the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from crd_edge.analysis.roofline import matmul_gflops  # noqa: F401  (the harness's roofline; re-exported)

FRAME_SHAPE = (480, 640, 3)  # a VGA camera frame, the demo's default capture size


def percentiles(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "min": float(a.min()), "max": float(a.max())}


def time_calls(fn, warmup: int, runs: int, max_seconds: float, min_runs: int = 5) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` untimed ones, stopping early once
    ``max_seconds`` of timed calls have passed (but never before ``min_runs``)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < runs:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= min_runs and time.perf_counter() - started > max_seconds:
            break
    return samples


def _frame_ops(height: int, width: int):
    """pre(frame) -> NCHW float32 [-1, 1]; post(NCHW) -> uint8 BGR image: the demo's own functions."""
    from crd_edge.imaging import fit_frame, from_model_output, to_model_input

    def pre(frame: np.ndarray) -> np.ndarray:
        return to_model_input(fit_frame(frame, (height, width), "crop"))

    return pre, from_model_output


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from VmHWM, which starts afresh at exec:
    ``ru_maxrss`` is inherited from the parent across fork and exec, so a harness started by a
    big process (the pipeline, 4 GB after its exports) would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def machine() -> dict:
    return {"hostname": platform.node(), "system": platform.system(), "machine": platform.machine(),
            "processor": _cpu_name(), "logical_cpus": os.cpu_count(), "python": platform.python_version()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(path: str | Path, threads: int = 2, warmup: int = 5, runs: int = 50, max_seconds: float = 10.0,
            roofline: bool = True, session_options: dict[str, dict] | None = None, op_profile: bool = True,
            size: tuple[int, int] | None = None) -> dict:
    """Open ``path`` through the runtime layer and measure it (see the module docstring).
    ``size``: where the artifact takes any height and width, the size to time it at, fed camera
    frames of that size (default 256x256 from a VGA frame); a fixed-size artifact refuses another."""
    from crd_edge.errors import UserError
    from crd_edge.runtime.base import input_hw
    from crd_edge.runtime.model import open_model
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    opened = open_model(str(path), threads=threads, session_options=session_options)
    session = opened.session
    load_ms = (time.perf_counter() - t0) * 1e3
    fixed = input_hw(session.input_shape)
    if fixed and size and tuple(size) != tuple(fixed):
        raise UserError(f"{path}: takes {fixed[0]}x{fixed[1]} input, not {size[0]}x{size[1]}; export it at that "
                        "size (export --size) or with --size dynamic")
    height, width = fixed or size or (256, 256)
    rng = np.random.default_rng(0)
    # a camera frame: VGA, or the size asked of a dynamic artifact (a 720p camera feeds 720p frames)
    frame = rng.integers(0, 256, (*size, 3) if size and not fixed else FRAME_SHAPE, dtype=np.uint8)
    pre, post = _frame_ops(height, width)
    x = pre(frame)
    t0 = time.perf_counter()
    y = session.run(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    latency = percentiles(time_calls(lambda: session.run(x), warmup, runs, max_seconds))
    prepost = {"pre": percentiles(time_calls(lambda: pre(frame), 3, 50, 2.0)),
               "post": percentiles(time_calls(lambda: post(y), 3, 50, 2.0)), "frame": list(frame.shape[:2])}
    result = {"path": str(path), "runtime": session.backend, "threads": threads, "input_size": [height, width],
              "load_ms": load_ms, "first_inference_ms": first_ms, "latency_ms": latency,
              "throughput_fps": 1e3 / latency["p50"], "prepost_ms": prepost,
              "end_to_end_fps": 1e3 / (latency["p50"] + prepost["pre"]["p50"] + prepost["post"]["p50"]),
              "peak_rss_mb": peak_rss_mb(), "machine": machine(),
              "settings": {"warmup": warmup, "runs": runs, "max_seconds": max_seconds}}
    if op_profile and hasattr(session, "op_profile"):
        # After the timing, in a second session of the runtime's own profiler: the measured one
        # stays unprofiled. A profiler failure costs the breakdown, never the measurement.
        try:
            result["ops"] = session.op_profile(x, runs=min(10, runs))
        except Exception as exc:  # noqa: BLE001 - each runtime's profiler raises its own types
            result["ops_note"] = f"no per-op profile: {str(exc).splitlines()[0][:160]}"
    if roofline:
        result["matmul"] = matmul_gflops(threads)
        from crd_edge.bench.ceilings import measure_ceiling
        try:  # the ceiling in the precision this artifact computes in (int8, bf16), where it differs
            ceiling = measure_ceiling(session.backend, opened.precision or "fp32", threads)
        except Exception as exc:  # noqa: BLE001 - a probe the runtime rejects costs the share, not the row
            result["ceiling_note"] = f"no {opened.precision} ceiling: {str(exc).splitlines()[0][:160]}"
        else:
            if ceiling is not None:
                result["ceiling"] = ceiling
    return result


def session_options(ov_device: str | None, ort_providers: list[str] | None) -> dict[str, dict]:
    """The runtimes' own options from bench's flags (the CPU is each runtime's default)."""
    options: dict[str, dict] = {}
    if ov_device:
        options["openvino"] = {"device": ov_device}
    if ort_providers:
        options["onnxruntime"] = {"providers": [*ort_providers, "CPUExecutionProvider"]}  # CPU: the fallback
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crd_edge.bench.harness",
                                     description="Measure one model artifact; prints one JSON line.")
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--no-roofline", action="store_true")
    parser.add_argument("--no-op-profile", action="store_true", help="Skip the per-op-type profile")
    parser.add_argument("--ov-device", default=None, help="OpenVINO device: CPU, GPU, NPU, AUTO")
    parser.add_argument("--ort-provider", action="append", default=None, help="onnxruntime execution provider")
    parser.add_argument("--size", default=None, help="HxW to time an artifact with dynamic height and width at")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    options = session_options(args.ov_device, args.ort_provider)
    from crd_edge.errors import UserError
    try:
        result = measure(args.path, args.threads, args.warmup, args.runs, args.max_seconds, not args.no_roofline,
                         options, not args.no_op_profile, size)
    except UserError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
