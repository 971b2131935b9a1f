"""A web artifact (a ``.web`` folder) run in a real browser: headless Chromium on this machine
opens the folder's ``session.html`` from a server on 127.0.0.1, and each ``run(x)`` hands the page
one input tensor and waits for its output (the folder's runtime: onnxruntime-web or LiteRT.js, in
WebAssembly, or LiteRT.js on WebGPU). The server sends the headers cross-origin isolation needs
(COOP/COEP), so the page may use WebAssembly threads as a deployed page with the same headers would.

Written here because no Python package drives a JavaScript runtime in a browser: the page polls
``/crd/next`` for an input (binary float32, its shape in ``X-Shape``) and posts the output to
``/crd/output``; :meth:`BrowserSession.time_runs` asks it instead to time the model itself
(``X-Command: time``), with ``performance.now()`` inside the page, so no HTTP round trip is
counted."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError

CHROMIUM_ENV = "CRD_EDGE_CHROMIUM"
START_TIMEOUT_S = 60.0   # Chromium's start and the model's compilation to WebAssembly
RUN_TIMEOUT_S = 120.0    # one inference (a teacher at camera size in one thread is seconds)
POLL_S = 10.0            # how long the page's request for the next input is held open
# The shortest warm-up before timing: V8 runs WebAssembly from its baseline compiler first and
# optimizes hot functions in background threads that share the cores. Measured on a 2-core EPYC,
# the 64 px student: p50 21.3 ms with no warm-up, 18.0 after 5 calls, 6.3 after 30 (0.5 s).
WARMUP_S = 2.0
BACKENDS = ("wasm", "webgpu")


def find_chromium() -> str | None:
    """``$CRD_EDGE_CHROMIUM``, else the first Chromium or Chrome on the PATH."""
    return os.environ.get(CHROMIUM_ENV) or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome", "chrome") if (found := shutil.which(name))),
        None)


def chromium_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    words = [w for w in out.split() if w[:1].isdigit()]
    return words[0] if words else "unknown"


class _Exchange:
    """What the server and the session share: queued inputs, posted outputs, the page's state."""

    def __init__(self) -> None:
        self.inputs: queue.Queue = queue.Queue()
        self.outputs: queue.Queue = queue.Queue()
        self.timings: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.info: dict = {}
        self.closed = False


class IsolatedFileHandler(SimpleHTTPRequestHandler):
    """A folder's files (nothing outside it) with the headers that make the page cross-origin
    isolated, which WebAssembly threads need, and the MIME types onnxruntime-web's files need
    (its threaded build loads an ES module worker, which browsers refuse as text/plain)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".mjs": "text/javascript", ".js": "text/javascript"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args) -> None:
        pass


class _Handler(IsolatedFileHandler):
    def __init__(self, *args, exchange: _Exchange, **kwargs) -> None:
        self.exchange = exchange
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path != "/crd/next":
            return super().do_GET()  # the folder's own files, nothing outside it
        try:
            item = None if self.exchange.closed else self.exchange.inputs.get(timeout=POLL_S)
        except queue.Empty:
            self.send_response(408)  # nothing yet: the page asks again
            self.end_headers()
            return
        if item is None:
            self.send_response(204)
            self.end_headers()
            return
        self.send_response(200)
        if isinstance(item, dict):  # a command: time the model inside the page
            body = json.dumps(item).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Command", "time")
        else:
            body = np.ascontiguousarray(item, dtype="<f4").tobytes()
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("X-Shape", ",".join(str(d) for d in item.shape))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/crd/output":
            self.exchange.outputs.put(np.frombuffer(body, dtype="<f4").copy())
        elif self.path == "/crd/timings":
            self.exchange.timings.put(json.loads(body))
        elif self.path == "/crd/ready":
            self.exchange.info = json.loads(body)
            self.exchange.ready.set()
        elif self.path == "/crd/error":
            self.exchange.info = {"error": body.decode("utf-8", "replace")}
            self.exchange.outputs.put(None)
            self.exchange.timings.put(None)
            self.exchange.ready.set()
        self.send_response(204)
        self.end_headers()


class BrowserSession:
    """``run`` maps NCHW float32 [-1, 1] to NCHW float32 [-1, 1] through the web artifact
    ``path`` in headless Chromium; :attr:`backend` names the runtime, its backend, threads and
    the browser; ``threads``: WebAssembly threads (default: the cores the browser reports);
    ``backend``: ``wasm`` (default) or ``webgpu`` (LiteRT.js only).
    Close it (or use it as a context manager) to stop the browser."""

    def __init__(self, path: str | Path, threads: int | None = None, backend: str = "wasm") -> None:
        if backend not in BACKENDS:
            raise UserError(f"browser backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.path = Path(path)
        for name in ("model.json", "session.html", "runtime.js"):
            if not (self.path / name).is_file():
                raise UserError(f"{self.path}: not a web artifact (no {name}); export one with --target web")
        meta = json.loads((self.path / "model.json").read_text())
        if not (self.path / meta.get("model", "?")).is_file():
            raise UserError(f"{self.path}: its model file {meta.get('model')} is missing; export it again")
        binary = find_chromium()
        if binary is None:
            raise UserError(f"{self.path}: running a web artifact needs Chromium or Chrome (apt install chromium, "
                            f"or set {CHROMIUM_ENV} to the browser's path)")
        # a folder exported with dynamic height and width takes any size; its example size is timed
        self.timed_size = (int(meta["height"]), int(meta["width"]))
        self.input_shape = (1, 3, "height", "width") if meta.get("dynamic") else (1, 3, *self.timed_size)
        self._exchange = _Exchange()
        handler = partial(_Handler, directory=str(self.path), exchange=self._exchange)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._profile = tempfile.mkdtemp(prefix="crd-edge-chromium-")
        query = f"?backend={backend}" + (f"&threads={threads}" if threads else "")
        url = f"http://127.0.0.1:{self._server.server_address[1]}/session.html{query}"
        # WebGPU is behind a flag in Chromium on Linux; where no GPU is usable it offers SwiftShader,
        # a software adapter (the backend then says so).
        gpu = ["--enable-unsafe-webgpu"] if backend == "webgpu" else ["--disable-gpu"]
        self._browser = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", *gpu, "--no-first-run", "--disable-extensions",
             f"--user-data-dir={self._profile}", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.browser = f"Chromium {chromium_version(binary)}"
        if not self._exchange.ready.wait(START_TIMEOUT_S) or "error" in self._exchange.info:
            reason = self._exchange.info.get("error", f"no answer in {START_TIMEOUT_S:.0f} s").splitlines()[0]
            self.close()
            raise UserError(f"{self.path}: the page could not load the model in {self.browser} ({reason[:200]})")
        info = self._exchange.info
        threads = info.get("threads", 1)
        self.threads, self.load_ms = threads, info.get("load_ms")
        where = (f"wasm, {threads} thread{'s' if threads != 1 else ''}" if info.get("backend", "wasm") == "wasm"
                 else info["backend"])
        self.runtime = f"{info.get('runtime', 'unknown runtime')} ({where})"  # bench rows: the browser is the device
        self.backend = f"{self.runtime} in {self.browser}"

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        self._exchange.inputs.put(x)
        try:
            out = self._exchange.outputs.get(timeout=RUN_TIMEOUT_S)
        except queue.Empty:
            raise UserError(f"{self.path}: no output from the browser in {RUN_TIMEOUT_S:.0f} s") from None
        if out is None:
            raise UserError(f"{self.path}: the page failed ({self._exchange.info.get('error', '').splitlines()[0][:200]})")
        return out.reshape(x.shape[0], 3, *x.shape[2:])

    def time_runs(self, warmup: int = 5, runs: int = 50, max_seconds: float = 10.0, min_runs: int = 5,
                  warmup_seconds: float = WARMUP_S) -> dict:
        """Time the model inside the page on a fixed input of its own size: ``first_ms`` (the
        first call of this request: the session's first inference if nothing ran before) and
        ``samples_ms``, ``runs`` calls after ``warmup`` untimed ones (and at least
        ``warmup_seconds`` of them: see :data:`WARMUP_S`), stopping once ``max_seconds`` of timed
        calls have passed (never before ``min_runs``), as the native harness does."""
        self._exchange.inputs.put({"warmup": warmup, "warmup_seconds": warmup_seconds, "runs": runs,
                                   "max_seconds": max_seconds, "min_runs": min_runs})
        per_call = RUN_TIMEOUT_S * (1 + warmup + min_runs) + warmup_seconds
        try:
            timings = self._exchange.timings.get(timeout=max_seconds + per_call)
        except queue.Empty:
            raise UserError(f"{self.path}: no timings from the browser in {max_seconds + per_call:.0f} s") from None
        if timings is None:
            raise UserError(f"{self.path}: the page failed ({self._exchange.info.get('error', '').splitlines()[0][:200]})")
        return timings

    def close(self) -> None:
        if getattr(self, "_browser", None) is not None:
            self._exchange.closed = True
            self._exchange.inputs.put(None)
            self._browser.terminate()
            try:
                self._browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._browser.kill()
            self._browser = None
            self._server.shutdown()
            self._server.server_close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "BrowserSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
