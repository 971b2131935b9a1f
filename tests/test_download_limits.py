"""Downloads from a hostile or broken server (one on 127.0.0.1): an endless body, a huge
Content-Length, a stall, a redirect loop. Each ends in one error line, with bounded memory and
disk and nothing left behind, for both `data download` and `assets install`."""

import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crd_edge import _assets
from crd_edge.data import assets as assets_mod
from crd_edge.data import download as dl
from crd_edge.errors import UserError
from test_assets import _asset

CHUNK = b"\0" * 65536


class HostileServer:
    """Answers every GET as ``mode`` says: endless (no length, bytes forever), huge (announces
    10^15 bytes, then sends forever), stall (headers, then nothing), redirect (to itself)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.sent, self.stop = mode, 0, threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        if self.mode == "redirect":
            h.send_response(302)
            h.send_header("Location", h.path)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        if self.mode == "huge":
            h.send_header("Content-Length", str(10 ** 15))
        h.end_headers()
        try:
            while not self.stop.is_set():
                if self.mode == "stall":
                    time.sleep(0.05)
                    continue
                h.wfile.write(CHUNK)
                self.sent += len(CHUNK)
        except OSError:  # the client hung up: what a limit should make it do
            pass


@pytest.fixture
def hostile():
    servers = []

    def start(mode: str) -> HostileServer:
        srv = HostileServer(mode)
        threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return srv
    yield start
    for srv in servers:
        srv.stop.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()


def _one_line(exc) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


@pytest.mark.parametrize("mode", ["endless", "huge"])
def test_a_data_set_download_stops_at_its_listed_size(hostile, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(dl, "LISTED_SIZE_SLACK", (2 << 20) / dl.find_dataset("horse2zebra").approx_bytes)
    srv = hostile(mode)
    with pytest.raises(UserError) as info:
        dl.download_dataset("horse2zebra", tmp_path, mirror=srv.url, quiet=True)
    assert "more than the 2 MB expected" in _one_line(info)
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) == 0  # nothing kept
    if mode == "endless":
        assert srv.sent < 64 << 20  # the client hung up soon after the limit


def test_an_endless_index_page_is_refused_with_bounded_memory(hostile, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(_assets.ASSETS, "tiny", _asset())
    monkeypatch.setattr(assets_mod, "INDEX_PAGE_LIMIT", 4 << 20)
    for mode in ("endless", "huge"):  # read() of a 10^15 Content-Length was a MemoryError
        srv = hostile(mode)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(UserError, match="not a package index page") as info:
            assets_mod.install_assets(["tiny"], index=srv.url + "/simple", quiet=True)
        _one_line(info)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 << 10  # KiB: under 256 MB


def test_an_endless_wheel_is_cut_at_its_limit_and_removed(hostile, pypi_unsized, monkeypatch, tmp_path):
    monkeypatch.setattr(assets_mod, "wheel_limit", lambda asset: 3 << 20)
    with pytest.raises(UserError, match="more than the") as info:
        assets_mod.install_assets(["tiny"], index=pypi_unsized, quiet=True)
    _one_line(info)
    folder = tmp_path / "cache" / "crd-edge" / "assets"
    assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))


@pytest.fixture
def pypi_unsized(hostile, tmp_path, monkeypatch):
    """An index (a real page listing the wheel with a sha256 and no size) whose wheel URL points
    at an endless server."""
    import json

    from test_data_download import ArchiveServer
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(_assets.ASSETS, "tiny", _asset())
    endless = hostile("endless")
    index = ArchiveServer()
    index.files["/simple/tinypkg/"] = json.dumps({"files": [
        {"filename": "tinypkg-1.0-py3-none-any.whl", "url": endless.url + "/w.whl",
         "hashes": {"sha256": "0" * 64}}]}).encode()
    threading.Thread(target=index.httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield index.url + "/simple"
    index.httpd.shutdown()
    index.httpd.server_close()


def test_a_stalled_server_is_one_line_after_the_timeout(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "TIMEOUT_S", 0.5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(_assets.ASSETS, "tiny", _asset())
    srv = hostile("stall")
    with pytest.raises(UserError) as info:
        assets_mod.install_assets(["tiny"], index=srv.url + "/simple", quiet=True)
    assert "cannot reach" in _one_line(info) and "timed out" in str(info.value)
    with pytest.raises(UserError) as info:
        dl.download_dataset("horse2zebra", tmp_path / "data", mirror=srv.url, quiet=True)
    assert "timed out" in _one_line(info)


def test_a_redirect_loop_is_one_line(hostile, tmp_path):
    srv = hostile("redirect")
    with pytest.raises(UserError, match="HTTP 30") as info:
        dl.download_dataset("horse2zebra", tmp_path, mirror=srv.url, quiet=True)
    _one_line(info)


