"""The demo's MJPEG server against hostile and unlucky clients: idle connections, requests that
never finish, viewers that stop reading, and strangers on a network address."""

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from crd_edge.demo import server as server_module
from crd_edge.demo.server import MjpegServer


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settle(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def small_server(monkeypatch):
    monkeypatch.setattr(server_module, "MAX_CLIENTS", 8)
    monkeypatch.setattr(server_module, "HEADER_SECONDS", 1.0)
    monkeypatch.setattr(server_module, "WRITE_SECONDS", 1.0)
    srv = MjpegServer("127.0.0.1:0")
    srv.write(np.zeros((32, 32, 3), np.uint8), {"frames": 1})
    yield srv
    srv.close()


def test_idle_and_unfinished_requests_cannot_hold_the_server(small_server):
    threads, fds = threading.active_count(), _open_fds()
    clients = []
    for i in range(40):  # 5x the connection cap, most sending nothing, some half a request
        c = socket.create_connection(("127.0.0.1", small_server.port), timeout=5)
        if i % 8 == 0:
            c.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends it
        clients.append(c)
    time.sleep(0.3)
    assert threading.active_count() <= threads + 8  # one thread per slot, no more

    with urllib.request.urlopen(f"{small_server.url}stats.json", timeout=2) as response:
        assert json.loads(response.read())["frames"] == 1  # a new client is served at once

    # Within the request deadline the server has closed every connection it kept.
    assert _settle(lambda: threading.active_count() <= threads, 3.0)
    for c in clients:
        c.close()
    assert _settle(lambda: _open_fds() <= fds)


def test_a_viewer_that_stops_reading_is_dropped(small_server):
    threads = threading.active_count()
    viewer = socket.create_connection(("127.0.0.1", small_server.port), timeout=5)
    viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    viewer.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # then never reads
    noise = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)  # ~2 MB as JPEG
    assert _settle(lambda: threading.active_count() > threads)  # streaming
    deadline = time.monotonic() + 8
    while threading.active_count() > threads and time.monotonic() < deadline:
        small_server.write(noise)  # fills the socket buffers until the server's write times out
        time.sleep(0.05)
    assert threading.active_count() <= threads  # the streaming thread gave up on the viewer
    viewer.close()


def test_a_network_address_needs_the_printed_token():
    srv = MjpegServer("0.0.0.0:0")
    try:
        assert srv.token and srv.url.endswith(f"/?token={srv.token}")
        base = f"http://127.0.0.1:{srv.port}"
        for path in ("/", "/stats.json", "/frame.jpg", "/stream.mjpg", f"/stats.json?token={srv.token}x"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403, path
        page = urllib.request.urlopen(srv.url, timeout=5).read().decode()
        assert f'src="/stream.mjpg?token={srv.token}"' in page and f"/stats.json?token={srv.token}" in page
        assert urllib.request.urlopen(f"{base}/stats.json?token={srv.token}", timeout=5).status == 200
    finally:
        srv.close()


def test_loopback_needs_no_token():
    srv = MjpegServer("127.0.0.1:0")
    try:
        assert srv.token is None and srv.url == f"http://127.0.0.1:{srv.port}/"
        assert urllib.request.urlopen(srv.url + "stats.json", timeout=5).status == 200
    finally:
        srv.close()


def test_clients_cut_off_mid_request_are_counted_not_printed(small_server, capfd):
    # Half-sent requests: the reaper cuts them at the request deadline, and the handler's
    # answer then meets a broken pipe. socketserver's default prints a traceback for each.
    clients = []
    for i in range(12):
        c = socket.create_connection(("127.0.0.1", small_server.port), timeout=5)
        c.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"G")
        clients.append(c)
    assert _settle(lambda: small_server.httpd.dropped >= 1, 5.0)
    for c in clients:
        c.close()
    time.sleep(0.3)
    assert "Traceback" not in capfd.readouterr().err
