"""`crd-edge assets install onnxruntime-web`: the web target's runtime from an npm registry (here
one on 127.0.0.1), the tarball and each file hash-checked, only the pinned files written."""

import hashlib
import io
import json
import random
import tarfile
import threading

import pytest

from crd_edge import _assets
from crd_edge._assets import WebRuntime, require_web_runtime, web_runtime_files
from crd_edge.errors import UserError
from test_data_download import ArchiveServer

LOADER = b"console.log('ort');\n" * 50
WASM = random.Random(0).randbytes(800_000)  # incompressible: the tarball spans several download chunks


def _tarball(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MEMBERS = {"package/dist/ort.wasm.min.js": LOADER, "package/dist/ort.wasm": WASM,
           "package/../../escape.js": b"never written", "/etc/absolute.js": b"never written"}


@pytest.fixture
def npm(monkeypatch, tmp_path):
    """An npm registry stand-in serving tinyort 1.0's tarball, an empty cache, the runtime registered."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tarball = _tarball(MEMBERS)
    runtime = WebRuntime("tinyort", "a test runtime", "tinyort", "1.0", _sha(tarball), len(tarball),
                         {"package/dist/ort.wasm.min.js": _sha(LOADER), "package/dist/ort.wasm": _sha(WASM)}, "MIT")
    monkeypatch.setitem(_assets.WEB_RUNTIMES, "tinyort", runtime)
    srv = ArchiveServer()
    srv.files["/tinyort/-/tinyort-1.0.tgz"] = tarball
    srv.registry, srv.runtime = srv.url, runtime
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_the_runtime_installs_from_the_registry_and_only_its_pinned_files(run_cli, npm, tmp_path):
    with pytest.raises(UserError, match="crd-edge assets install tinyort"):
        require_web_runtime("tinyort", "--target web")
    code, out, err = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["status"] == "installed" and result["downloaded_mb"] > 0.5
    folder = web_runtime_files("tinyort")
    assert folder is not None and str(folder) == result["path"]
    assert (folder / "package/dist/ort.wasm").read_bytes() == WASM
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert all("escape" not in p and "absolute" not in p for p in written)  # the other members: never
    assert not list((tmp_path / "cache" / "crd-edge" / "assets").glob(".*"))  # no .part, no staging folder
    code, out, _ = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--json")
    assert json.loads(out)[0]["status"] == "already here"  # nothing downloaded twice
    code, out, _ = run_cli("assets", "list", "--json")
    assert {"name": "tinyort", "status": "asset folder"}.items() <= next(r for r in json.loads(out) if r["name"] == "tinyort").items()


def test_a_changed_tarball_or_file_is_refused_and_leaves_nothing(run_cli, npm, monkeypatch, tmp_path):
    npm.files["/tinyort/-/tinyort-1.0.tgz"] = _tarball({**MEMBERS, "package/dist/ort.wasm": WASM[::-1]})
    code, _, err = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--quiet")
    assert code == 2 and "does not have the sha256" in err and web_runtime_files("tinyort") is None
    # A tarball that matches its pinned hash but holds a changed file (a wrong pin, say): refused too.
    tarball = npm.files["/tinyort/-/tinyort-1.0.tgz"]
    monkeypatch.setitem(_assets.WEB_RUNTIMES, "tinyort", WebRuntime(
        "tinyort", "a test runtime", "tinyort", "1.0", _sha(tarball), len(tarball), npm.runtime.files, "MIT"))
    code, _, err = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--quiet")
    assert code == 2 and "package/dist/ort.wasm in .tinyort-1.0.tgz.part does not have the sha256" in err
    assert web_runtime_files("tinyort") is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_a_link_where_a_pinned_file_should_be_is_refused(run_cli, npm, monkeypatch):
    tarball = _tarball({"package/dist/ort.wasm": WASM}, links={"package/dist/ort.wasm.min.js": "/etc/passwd"})
    npm.files["/tinyort/-/tinyort-1.0.tgz"] = tarball
    monkeypatch.setitem(_assets.WEB_RUNTIMES, "tinyort", WebRuntime(
        "tinyort", "a test runtime", "tinyort", "1.0", _sha(tarball), len(tarball), npm.runtime.files, "MIT"))
    code, _, err = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--quiet")
    assert code == 2 and "package/dist/ort.wasm.min.js is not a regular file" in err


def test_a_registry_sending_more_than_the_pinned_size_is_cut_off(run_cli, npm):
    npm.files["/tinyort/-/tinyort-1.0.tgz"] += b"\0" * 100_000
    code, _, err = run_cli("assets", "install", "tinyort", "--registry", npm.registry, "--quiet")
    assert code == 2 and "not downloaded" in err and web_runtime_files("tinyort") is None


def test_a_registry_that_is_not_a_url_is_refused_before_any_download(run_cli, npm):
    code, _, err = run_cli("assets", "install", "tinyort", "--registry", "ftp://x", "--quiet")
    assert code == 2 and "--registry 'ftp://x' is not an http(s) URL" in err
