"""``--serve HOST:PORT``: the composed frames as an MJPEG stream on a small page, so a headless
board or a remote box running the demo can be watched from a laptop's browser.

GET /            the page: a 32-pixel header with the stats, the stream below at its own size
GET /stream.mjpg multipart/x-mixed-replace JPEG stream (every browser shows it in an <img>)
GET /frame.jpg   the newest frame, once
GET /stats.json  frames, FPS and model latency

Plain HTTP, no encryption. On a loopback address anyone on this machine may watch; on any other
address every URL must carry the random ``?token=`` printed with the server's URL (403 without
it), so only someone who was given the URL can watch. The number of connections is capped
(``MAX_CLIENTS``), a client must send its request within ``HEADER_SECONDS``, and a stream whose
viewer stops reading is dropped after ``WRITE_SECONDS``: idle or slow clients cannot hold
threads and file descriptors.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import secrets
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from crd_edge._deps import import_cv2
from crd_edge.errors import UserError

_BOUNDARY = "crdedgeframe"
MAX_CLIENTS = 64       # connections at once (each holds a thread and a descriptor)
HEADER_SECONDS = 5.0   # to send the request line and headers, in all
WRITE_SECONDS = 10.0   # a viewer that stops reading for this long is dropped
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>crd-edge demo</title>
<style>
body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
header{{height:32px;line-height:32px;padding:0 12px;white-space:nowrap;overflow:hidden}}
img{{display:block;margin:0;max-width:100%}}
</style>
</head><body>
<header><b>crd-edge demo</b> &middot; {title} &middot; <span id="stats">connecting...</span></header>
<img id="stream" src="/stream.mjpg{query}" alt="live stream">
<script>
setInterval(function () {{
  fetch('/stats.json{query}').then(function (r) {{ return r.json(); }}).then(function (s) {{
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CLIENTS`` of them. A connection must send its
    request within ``HEADER_SECONDS`` (a per-read timeout alone lets a client that sends a byte
    every few seconds hold its thread for ever); when every slot is taken, the connection that
    has waited longest without sending a request makes room for the new one, so a flood of idle
    connections cannot lock out a viewer whose browser sends its request at once."""

    daemon_threads = True
    request_queue_size = 128  # the kernel's backlog: bursts of connections are accepted, not refused

    def __init__(self, address, handler) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._waiting: dict[socket.socket, float] = {}  # connection -> deadline for its request
        self._lock = threading.Lock()
        self._closing = threading.Event()  # before binding: a failed bind calls server_close()
        self._reaper: threading.Thread | None = None
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="crd-edge-mjpeg-reaper", daemon=True)
        self._reaper.start()

    def server_close(self) -> None:
        self._closing.set()
        if self._reaper is not None:
            self._reaper.join(timeout=1.0)
        super().server_close()

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self._drop(self._oldest_waiting())
            if not self._slots.acquire(timeout=0.5):  # every slot streams: no room
                try:
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                    b"Connection: close\r\n\r\n")
                except OSError:
                    pass
                self.shutdown_request(request)
                return
        with self._lock:
            self._waiting[request] = time.monotonic() + HEADER_SECONDS
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.request_done(request)
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.request_done(request)
            self._slots.release()

    dropped = 0  # connections that ended in a network error (cut by the reaper, or the client went away)

    def handle_error(self, request, client_address) -> None:
        """socketserver prints a traceback for every error in a handler; a client that went
        away (a broken pipe or a reset, often one the reaper cut off for never finishing its
        request) is routine for a server on a network: counted, not printed."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self.dropped += 1
            return
        sys.stderr.write(f"demo server: {type(error).__name__}: {error} (client {client_address[0]})\n")

    def request_done(self, request) -> None:
        """The request has arrived (or the connection ended): no deadline any more."""
        with self._lock:
            self._waiting.pop(request, None)

    def _oldest_waiting(self) -> list:
        with self._lock:
            if not self._waiting:
                return []
            oldest = min(self._waiting, key=self._waiting.get)
            del self._waiting[oldest]
            return [oldest]

    def _reap(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, deadline in self._waiting.items() if deadline < now]
                for conn in late:
                    del self._waiting[conn]
            self._drop(late)

    @staticmethod
    def _drop(connections: list) -> None:
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns at once
            except OSError:
                pass


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
        # Beyond this machine, a URL that cannot be guessed is what keeps strangers out.
        self.token = None if is_loopback(host) else secrets.token_urlsafe(12)
        query = f"?token={self.token}" if self.token else ""
        page = _PAGE.format(title=title or "live", query=query).encode()
        try:
            self.httpd = _BoundedServer((host, port), _handler(self, page))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--serve {address}: port {port} is in use; pick another, e.g. --serve {host}:{port + 1}") from None
            raise UserError(f"--serve {address}: cannot listen there ({exc.strerror or exc})") from None
        self.port = self.httpd.server_address[1]
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/{query}"
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
        timeout = WRITE_SECONDS  # every read and write on the connection

        def log_message(self, *args) -> None:  # keep the demo's terminal clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.server.request_done(self.request)
            url = urlsplit(self.path)
            path = url.path
            if server.token is not None and not hmac.compare_digest(
                    parse_qs(url.query).get("token", [""])[0].encode(), server.token.encode()):
                self._send(HTTPStatus.FORBIDDEN, "text/plain", b"this demo needs the URL it printed, token included\n")
            elif path in ("/", "/index.html"):
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
            except OSError:
                pass  # the browser went away (broken pipe, reset) or stopped reading (timeout)

    return Handler
