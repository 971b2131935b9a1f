"""Tests for ``crd-edge data download`` against a real HTTP server on 127.0.0.1.

The server (our own small handler) serves zip and tar.gz archives built here from real photos
in the CycleGAN and pix2pix layouts; it can honour or ignore Range, cut a response short, and
records every request. Nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crd_edge.data import download as dl
from crd_edge.data.builtin import builtin_photos
from crd_edge.data.datasets import AlignedDataset, UnalignedDataset, build_dataset
from crd_edge.errors import UserError

CYCLEGAN_PATH = "/cyclegan/datasets/horse2zebra.zip"
PIX2PIX_PATH = "/pix2pix/datasets/facades.tar.gz"


# ------------------------------------------------------------------------ archives


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Four real photos, 64x64."""
    return [np.asarray(Image.fromarray(p.image).resize((64, 64), Image.BICUBIC))
            for p in builtin_photos()[:4]]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def cyclegan_zip(photos) -> bytes:
    """``horse2zebra/{trainA,trainB,testA,testB}/*.jpg``, as the CycleGAN zips are laid out."""
    members = {}
    for split in ("trainA", "trainB", "testA", "testB"):
        for i in range(2):
            k = i + (2 if split.endswith("B") else 0)
            members[f"horse2zebra/{split}/{k}.jpg"] = _jpeg(photos[k])
    return _zip(members)


@pytest.fixture(scope="module")
def pix2pix_tar(photos) -> bytes:
    """``facades/{train,val,test}/*.jpg`` with A|B side by side, as the pix2pix tars are."""
    members = {}
    for split in ("train", "val", "test"):
        for i in range(2):
            pair = np.concatenate([photos[i], photos[i + 2]], axis=1)
            members[f"facades/{split}/{i}.jpg"] = _jpeg(pair)
    return _tar_gz(members)


# ------------------------------------------------------------------------ the server


class ArchiveServer:
    """Serves ``files`` (URL path -> bytes); records (path, Range header) and bytes sent."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.cut_after: int | None = None  # send only this many body bytes, then hang up
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.serve(self)

        return Handler

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        range_header = h.headers.get("Range")
        self.requests.append((h.path, range_header))
        body = self.files.get(h.path)
        if body is None:
            h.send_error(404)
            return
        start = 0
        if range_header and self.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        payload = body[start:]
        if self.cut_after is not None:
            payload = payload[: self.cut_after]
        h.wfile.write(payload)
        self.sent += len(payload)

    def reset_log(self) -> None:
        self.requests.clear()
        self.sent = 0


@pytest.fixture
def server(cyclegan_zip, pix2pix_tar) -> Iterator[ArchiveServer]:
    srv = ArchiveServer()
    srv.files = {CYCLEGAN_PATH: cyclegan_zip, PIX2PIX_PATH: pix2pix_tar}
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    thread.join(5)


def fetch(server: ArchiveServer, dest: Path, name: str = "horse2zebra", **kw) -> dl.DownloadResult:
    return dl.download_dataset(name, dest, mirror=server.url, quiet=True, **kw)


def leftovers(dest: Path) -> list[str]:
    """Hidden files or folders left in ``dest`` (.part files, extraction folders)."""
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message


# ------------------------------------------------------------------------ success


def test_cyclegan_zip_lands_in_the_unaligned_layout(server, tmp_path):
    result = fetch(server, tmp_path)
    assert result.path == tmp_path / "horse2zebra"
    assert result.layout == "unaligned" and not result.skipped
    assert result.url == server.url + CYCLEGAN_PATH
    assert result.downloaded_bytes == result.archive_bytes == len(server.files[CYCLEGAN_PATH])
    assert sorted(p.name for p in result.path.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert leftovers(tmp_path) == []  # no .part, no extraction folder
    data = build_dataset(result.path, size=32, load_size=32)
    assert isinstance(data, UnalignedDataset) and len(data) == 2
    assert data[0]["A"].shape == (3, 32, 32) and data[0]["B"].shape == (3, 32, 32)


def test_pix2pix_tar_lands_in_the_aligned_layout(server, tmp_path):
    result = fetch(server, tmp_path, "pix2pix/facades")
    # facades exists in both families, so the folder says which one it is
    assert result.path == tmp_path / "facades_pix2pix" and result.layout == "aligned"
    assert result.url == server.url + PIX2PIX_PATH
    assert leftovers(tmp_path) == []
    data = build_dataset(result.path, size=32, load_size=32)
    assert isinstance(data, AlignedDataset) and len(data) == 2
    assert data[0]["B"].shape == (3, 32, 32)


def test_mirror_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv(dl.MIRROR_ENV, server.url)
    result = dl.download_dataset("horse2zebra", tmp_path, quiet=True)
    assert result.layout == "unaligned"
    monkeypatch.setenv(dl.MIRROR_ENV, "ftp://example.org")
    with pytest.raises(UserError, match=dl.MIRROR_ENV):
        dl.download_dataset("horse2zebra", tmp_path / "other", quiet=True)


# ------------------------------------------------------------------------ resume


def test_resume_asks_for_the_rest_only(server, tmp_path):
    body = server.files[CYCLEGAN_PATH]
    kept = len(body) // 3
    (tmp_path / ".horse2zebra.part").write_bytes(body[:kept])
    result = fetch(server, tmp_path)
    assert server.requests == [(CYCLEGAN_PATH, f"bytes={kept}-")]
    assert server.sent == len(body) - kept
    assert (result.resumed_from, result.downloaded_bytes) == (kept, len(body) - kept)
    assert result.layout == "unaligned" and leftovers(tmp_path) == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.honour_range = False
    body = server.files[CYCLEGAN_PATH]
    (tmp_path / ".horse2zebra.part").write_bytes(body[:1000])
    result = fetch(server, tmp_path)
    assert server.requests[0][1] == "bytes=1000-" and server.sent == len(body)
    assert result.resumed_from == 0 and result.archive_bytes == len(body)  # not appended
    assert result.layout == "unaligned"


def test_interrupted_download_keeps_the_part_and_resumes(server, tmp_path):
    body = server.files[CYCLEGAN_PATH]
    server.cut_after = len(body) // 2
    with pytest.raises(UserError, match="run the same command again to resume") as info:
        fetch(server, tmp_path)
    assert_one_line(str(info.value))
    assert (tmp_path / ".horse2zebra.part").stat().st_size == len(body) // 2
    server.cut_after, _ = None, server.reset_log()
    result = fetch(server, tmp_path)
    assert server.requests == [(CYCLEGAN_PATH, f"bytes={len(body) // 2}-")]
    assert result.resumed_from == len(body) // 2 and result.layout == "unaligned"


def test_complete_part_is_not_downloaded_again(server, tmp_path):
    body = server.files[CYCLEGAN_PATH]
    (tmp_path / ".horse2zebra.part").write_bytes(body)
    result = fetch(server, tmp_path)  # the server answers 416 with the total: already complete
    assert server.sent == 0 and result.downloaded_bytes == 0
    assert result.layout == "unaligned"


# ------------------------------------------------------------------------ failures


def test_corrupt_archive_is_removed_with_one_line(server, tmp_path):
    server.files[CYCLEGAN_PATH] = os.urandom(5000)
    with pytest.raises(UserError, match="corrupt or truncated") as info:
        fetch(server, tmp_path)
    assert_one_line(str(info.value))
    assert ".horse2zebra.part" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no .part to resume from, no half folder


def test_truncated_tar_gz_is_removed(server, tmp_path):
    server.files[PIX2PIX_PATH] = server.files[PIX2PIX_PATH][:-2000]  # sizes agree, data ends early
    with pytest.raises(UserError, match="corrupt or truncated"):
        fetch(server, tmp_path, "pix2pix/facades")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_member_escaping_the_folder_is_refused(server, tmp_path, archive, photos):
    members = {"horse2zebra/trainA/0.jpg": _jpeg(photos[0]), "horse2zebra/../../evil.txt": b"x"}
    path = CYCLEGAN_PATH if archive == "zip" else PIX2PIX_PATH
    server.files[path] = _zip(members) if archive == "zip" else _tar_gz(members)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="outside its folder") as info:
        fetch(server, dest, "horse2zebra" if archive == "zip" else "pix2pix/facades")
    assert_one_line(str(info.value))
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []


def test_404_names_the_url(server, tmp_path):
    with pytest.raises(UserError, match="404") as info:
        fetch(server, tmp_path, "apple2orange")
    assert server.url + "/cyclegan/datasets/apple2orange.zip" in str(info.value)
    assert_one_line(str(info.value))


def test_unreachable_server_names_the_url_and_the_way_out(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="cannot reach") as info:
        dl.download_dataset("horse2zebra", tmp_path, mirror=f"http://127.0.0.1:{port}", quiet=True)
    assert f"http://127.0.0.1:{port}/cyclegan/datasets/horse2zebra.zip" in str(info.value)
    assert "--data" in str(info.value)


def test_sha256_is_checked_when_known(server, tmp_path, monkeypatch):
    entry = dl.DATASETS["horse2zebra"]
    monkeypatch.setitem(dl.DATASETS, "horse2zebra", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(UserError, match="sha256"):
        fetch(server, tmp_path)
    assert list(tmp_path.iterdir()) == []
    good = hashlib.sha256(server.files[CYCLEGAN_PATH]).hexdigest()
    monkeypatch.setitem(dl.DATASETS, "horse2zebra", dataclasses.replace(entry, sha256=good))
    assert fetch(server, tmp_path).layout == "unaligned"


def test_names(tmp_path):
    with pytest.raises(UserError, match="did you mean 'horse2zebra'") as info:
        dl.find_dataset("horse2zebr")
    assert "edges2shoes" in str(info.value)  # the list of available names
    with pytest.raises(UserError, match="cyclegan/facades or pix2pix/facades"):
        dl.find_dataset("facades")
    assert dl.find_dataset("cyclegan/horse2zebra") is dl.DATASETS["horse2zebra"]
    assert dl.find_dataset("Edges2Shoes").layout == "aligned"
    with pytest.raises(UserError, match="cityscapes-dataset.com"):
        dl.download_dataset("cityscapes", tmp_path)


def test_existing_destination_is_kept_unless_forced(server, tmp_path):
    (tmp_path / "horse2zebra" / "trainA").mkdir(parents=True)
    (tmp_path / "horse2zebra" / "mine.txt").write_text("keep")
    result = fetch(server, tmp_path)
    assert result.skipped and server.requests == []
    assert any("--force" in note for note in result.notes)
    result = fetch(server, tmp_path, force=True)
    assert not result.skipped and result.layout == "unaligned"
    assert not (tmp_path / "horse2zebra" / "mine.txt").exists() and leftovers(tmp_path) == []


def test_nothing_is_downloaded_at_import(monkeypatch):
    import importlib
    import urllib.request

    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    importlib.reload(dl)
    assert calls == []


# ------------------------------------------------------------------------ through the CLI


def test_cli_download_and_list(run_cli, server, tmp_path):
    code, out, _ = run_cli("data", "download", "horse2zebra", "--out", tmp_path, "--mirror",
                           server.url, "--quiet")
    assert code == 0 and "layout: unaligned" in out and str(tmp_path / "horse2zebra") in out
    code, out, _ = run_cli("data", "list")
    assert code == 0 and "edges2shoes" in out and "pix2pix/facades" in out
    code, _, err = run_cli("data", "download", "--list")  # one way to list: `data list`
    assert code == 2 and "--list" in err


@pytest.mark.parametrize("args, expected", [
    (["horse2zebr"], "unknown dataset 'horse2zebr'"),
    (["apple2orange"], "404"),
    (["facades"], "cyclegan/facades or pix2pix/facades"),
    ([], "needs NAME"),
])
def test_cli_errors_are_one_line_with_exit_2(run_cli, server, tmp_path, args, expected):
    code, _, err = run_cli("data", "download", *args, "--out", tmp_path, "--mirror", server.url,
                           "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_cli_corrupt_archive_exit_2(run_cli, server, tmp_path):
    server.files[CYCLEGAN_PATH] = b"<html>captive portal</html>"
    code, _, err = run_cli("data", "download", "horse2zebra", "--dest", tmp_path, "--mirror",
                           server.url, "--quiet")
    assert code == 2 and err.startswith("error: ") and "corrupt" in err
    assert not (tmp_path / ".horse2zebra.part").exists()


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_an_archive_bomb_is_refused_and_nothing_is_left(server, tmp_path, archive, photos, monkeypatch):
    import dataclasses
    for key in ("horse2zebra", "pix2pix/facades"):  # no listed size: the limit is 8x the archive's own
        monkeypatch.setitem(dl.DATASETS, key, dataclasses.replace(dl.DATASETS[key], approx_bytes=None))
    zeros = b"\0" * (4 << 20)  # compresses ~1000x: far beyond 8x the archive's size once expanded
    members = {"horse2zebra/trainA/0.jpg": _jpeg(photos[0]), "horse2zebra/trainA/pad.jpg": zeros}
    path = CYCLEGAN_PATH if archive == "zip" else PIX2PIX_PATH
    if archive == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        server.files[path] = buf.getvalue()
    else:
        server.files[path] = _tar_gz(members)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="archive bomb") as info:
        fetch(server, dest, "horse2zebra" if archive == "zip" else "pix2pix/facades")
    assert_one_line(str(info.value))
    assert list(dest.iterdir()) == []  # no archive, no partial tree


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_too_many_members_are_refused(server, tmp_path, archive, photos, monkeypatch):
    monkeypatch.setattr(dl, "MAX_MEMBERS", 3)
    members = {f"horse2zebra/trainA/{i}.jpg": _jpeg(photos[0]) for i in range(5)}
    path = CYCLEGAN_PATH if archive == "zip" else PIX2PIX_PATH
    server.files[path] = _zip(members) if archive == "zip" else _tar_gz(members)
    with pytest.raises(UserError, match="more than 3 members"):
        fetch(server, tmp_path / "dest", "horse2zebra" if archive == "zip" else "pix2pix/facades")
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("archive", ["zip", "tar.gz"])
def test_an_absolute_member_is_refused_by_both_formats(server, tmp_path, archive, photos):
    members = {"horse2zebra/trainA/0.jpg": _jpeg(photos[0]), "/tmp/crd-edge-absolute.txt": b"x"}
    path = CYCLEGAN_PATH if archive == "zip" else PIX2PIX_PATH
    server.files[path] = _zip(members) if archive == "zip" else _tar_gz(members)
    with pytest.raises(UserError, match="outside its folder"):
        fetch(server, tmp_path / "dest", "horse2zebra" if archive == "zip" else "pix2pix/facades")
    assert list((tmp_path / "dest").iterdir()) == []
