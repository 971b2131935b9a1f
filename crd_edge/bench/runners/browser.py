"""The browser runner: a web artifact (``--target web`` or ``web-litert``) timed inside headless
Chromium on this machine. The page times the model itself (``performance.now()`` around ``session.run``, no HTTP
round trip counted), with the same warm-up calls, runs and time limit as the native harness
(plus a shortest warm-up time: V8 optimizes the WebAssembly while it runs); the
browser, its version, the backend and its threads name the row's runtime."""

from __future__ import annotations

import time
from pathlib import Path

from crd_edge.bench.harness import machine, percentiles


def run_browser(artifact: Path, threads: int | None = None, warmup: int = 5, runs: int = 50,
                max_seconds: float = 10.0, backend: str = "wasm") -> dict:
    from crd_edge.runtime.browser_session import WARMUP_S, BrowserSession
    started = time.perf_counter()
    with BrowserSession(artifact, threads=threads, backend=backend) as session:
        start_ms = (time.perf_counter() - started) * 1e3
        timings = session.time_runs(warmup, runs, max_seconds)
        latency = percentiles(timings["samples_ms"])
        return {"path": str(artifact), "runtime": session.runtime, "threads": session.threads,
                "input_size": list(session.timed_size),
                # load: the page's InferenceSession.create (fetch, WebAssembly compile, graph set-up);
                # the browser's own start is in browser_start_ms
                "load_ms": session.load_ms, "browser_start_ms": start_ms,
                "first_inference_ms": timings["first_ms"], "latency_ms": latency,
                "throughput_fps": 1e3 / latency["p50"],
                "settings": {"warmup": warmup, "warmup_seconds": WARMUP_S, "runs": runs, "max_seconds": max_seconds},
                "device": {"kind": "browser", "name": session.browser, "browser": session.browser, **machine()}}
