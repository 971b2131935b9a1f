"""``--serve HOST:PORT``: the composed frames as an MJPEG stream on a small page, so a headless
board or a remote box running the demo can be watched from a laptop's browser.

GET /            the page: a 32-pixel header with the stats, the stream below at its own size
GET /stream.mjpg multipart/x-mixed-replace JPEG stream (every browser shows it in an <img>)
GET /frame.jpg   the newest frame, once
GET /stats.json  frames, FPS and model latency
"""

from __future__ import annotations

import errno
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from crd_edge._deps import import_cv2
from crd_edge.errors import UserError

_BOUNDARY = "crdedgeframe"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>crd-edge demo</title>
<style>
body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
header{{height:32px;line-height:32px;padding:0 12px;white-space:nowrap;overflow:hidden}}
img{{display:block;margin:0;max-width:100%}}
</style>
</head><body>
<header><b>crd-edge demo</b> &middot; {title} &middot; <span id="stats">connecting...</span></header>
<img id="stream" src="/stream.mjpg" alt="live stream">
<script>
setInterval(function () {{
  fetch('/stats.json').then(function (r) {{ return r.json(); }}).then(function (s) {{
    document.getElementById('stats').textContent =
      s.frames + ' frames, ' + s.fps.toFixed(1) + ' FPS, model ' + s.latency_ms.toFixed(1) + ' ms';
  }}).catch(function () {{}});
}}, 1000);
</script>
</body></html>
"""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--serve {text}: expected HOST:PORT, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for other machines)")
    return host.strip("[]") or "127.0.0.1", int(port)


class MjpegServer:
    """Serves the newest published frame to every connected client, in its own threads."""

    def __init__(self, address: str, title: str = "", quality: int = 85) -> None:
        host, port = parse_address(address)
        self.quality = quality
        self._jpeg: bytes | None = None
        self._seq = 0
        self._stats = {"frames": 0, "fps": 0.0, "latency_ms": 0.0}
        self._cond = threading.Condition()
        self._closed = False
        page = _PAGE.format(title=title or "live").encode()
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self, page))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--serve {address}: port {port} is in use; pick another, e.g. --serve {host}:{port + 1}") from None
            raise UserError(f"--serve {address}: cannot listen there ({exc.strerror or exc})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="crd-edge-mjpeg", daemon=True)
        self._thread.start()

    def write(self, frame: np.ndarray, stats: dict | None = None) -> None:
        cv2 = import_cv2()
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq += 1
            if stats:
                self._stats.update(stats)
            self._cond.notify_all()

    def next_frame(self, last_seq: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """Wait for a frame newer than ``last_seq``; (seq, jpeg) or (last_seq, None) on timeout/close."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > last_seq or self._closed, timeout=timeout)
            if self._closed or self._seq <= last_seq:
                return last_seq, None
            return self._seq, self._jpeg

    def latest(self) -> bytes | None:
        with self._cond:
            return self._jpeg

    def current(self) -> tuple[int, bytes | None]:
        with self._cond:
            return self._seq, self._jpeg

    def stats(self) -> dict:
        with self._cond:
            return dict(self._stats)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2.0)


def _handler(server: MjpegServer, page: bytes):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the demo's terminal clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)
            elif path == "/frame.jpg":
                jpeg = server.latest()
                if jpeg is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                else:
                    self._send(HTTPStatus.OK, "image/jpeg", jpeg)
            elif path == "/stats.json":
                self._send(HTTPStatus.OK, "application/json", json.dumps(server.stats()).encode())
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

        def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq, jpeg = server.current()
            try:
                while not server.closed:
                    if jpeg is not None:
                        self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         f"{len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                    seq, jpeg = server.next_frame(seq)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away

    return Handler
