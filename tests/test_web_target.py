"""The web target: a folder for any static web server (the ONNX student, onnxruntime-web's
WebAssembly files, its pages), verified against torch in a real headless Chromium."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import USER_CACHE
from test_int8_search import checkpoint  # noqa: F401 - the same tiny inherited student, as a fixture
from crd_edge._assets import WEB_RUNTIMES, web_runtime_dir, web_runtime_files
from crd_edge.runtime.browser_session import find_chromium

RUNTIME = WEB_RUNTIMES["onnxruntime-web"]


def _runtime_from_user_cache(monkeypatch, name: str) -> Path:
    """The web runtime ``name`` the user installed (sha256-pinned, so its content is fixed), and
    what it imports, copied into the tests' own cache; skips where they or Chromium are missing."""
    if find_chromium() is None:
        pytest.skip("no Chromium (scripts/install.sh --test-tools installs Debian's)")
    for needed in (*WEB_RUNTIMES[name].requires, name):
        monkeypatch.setenv("XDG_CACHE_HOME", USER_CACHE)
        installed = web_runtime_files(needed)
        monkeypatch.undo()
        if installed is None:
            pytest.skip(f"{needed} is not installed: crd-edge assets install {name} "
                        "(scripts/install.sh --test-tools does)")
        target = web_runtime_dir(WEB_RUNTIMES[needed])
        if web_runtime_files(needed) is None:
            shutil.copytree(installed, target, dirs_exist_ok=True)
    return web_runtime_dir(WEB_RUNTIMES[name])


@pytest.fixture
def web_runtime(monkeypatch):
    """onnxruntime-web in the tests' cache (the web target's runtime)."""
    return _runtime_from_user_cache(monkeypatch, RUNTIME.name)


@pytest.fixture
def litert_runtime(monkeypatch):
    """LiteRT.js in the tests' cache (the web-litert target's runtime); needs the tflite converter."""
    pytest.importorskip("litert_torch", reason="the web-litert target converts with crd-edge[tflite]")
    return _runtime_from_user_cache(monkeypatch, "litertjs")


def test_the_web_folder_is_verified_in_chromium_against_torch(run_cli, web_runtime, checkpoint, tmp_path):
    code, out, err = run_cli("export", checkpoint, "--target", "web", "--size", "64", "--out", tmp_path / "exp")
    assert code == 0, err
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    folder = tmp_path / "exp" / record["path"]
    assert record["path"] == "student_64_fp32.web" and record["target"] == "web"
    check = record["verification"]
    assert check["status"] == "passed" and check["psnr_db_min"] >= 60
    assert "onnxruntime-web 1.31.1 (wasm" in check["runtime"] and "in Chromium" in check["runtime"]
    # Everything a static server needs, nothing fetched from elsewhere: the pages name local files only.
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "model.json", "index.html", "app.js",
                                                  "session.html", "session.js", "runtime.js", "ort"}
    assert {p.relative_to(folder / "ort").as_posix() for p in (folder / "ort").rglob("*") if p.is_file()} == {
        "dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm", "NOTICE.txt"}
    assert "licence MIT" in (folder / "ort" / "NOTICE.txt").read_text()
    for page in ("index.html", "app.js", "session.html", "session.js", "runtime.js"):
        assert "http://" not in (folder / page).read_text() and "https://" not in (folder / page).read_text()
    assert json.loads((folder / "model.json").read_text())["height"] == 64
    assert record["tool_versions"]["onnxruntime-web"] == "1.31.1"


def test_the_litert_folder_runs_the_tflite_file_in_litert_js(run_cli, litert_runtime, checkpoint, tmp_path):
    """web-litert: the same pages with the .tflite file in LiteRT.js (NHWC inside, NCHW at the
    page's interface), verified in Chromium against torch and timed there."""
    code, out, err = run_cli("export", checkpoint, "--target", "web-litert", "--size", "64", "--out", tmp_path / "exp")
    assert code == 0, err
    (record,) = json.loads((tmp_path / "exp" / "manifest.json").read_text())["artifacts"]
    assert record["path"] == "student_64_fp32.litert.web" and record["target"] == "web-litert"
    assert record["verification"]["status"] == "passed" and record["verification"]["psnr_db_min"] >= 60
    assert record["verification"]["runtime"].startswith("LiteRT.js 2.5.3 (wasm")
    assert record["input"]["shape"] == [1, 3, 64, 64] and record["tool_versions"]["litertjs"] == "2.5.3"
    folder = tmp_path / "exp" / record["path"]
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"model.tflite", "runtime.js", "index.html", "litert/core/dist/index.js", "litert/wasm-utils/dist/index.js",
            "litert/core/wasm/litert_wasm_threaded_internal.wasm", "litert/core/NOTICE.txt"} <= files
    assert not any(f.endswith(".onnx") or "jspi" in f for f in files)
    assert "licence Apache-2.0" in (folder / "litert" / "core" / "NOTICE.txt").read_text()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model"] == "model.tflite" and meta["model_layout"] == "NHWC" and meta["layout"] == "NCHW"
    code, out, err = run_cli("bench", folder, "--on", "browser", "--warmup", "1", "--runs", "5", "--max-seconds", "1",
                             "--out", tmp_path / "bench")
    assert code == 0, err
    (row,) = [json.loads(line) for line in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "measured" and row["runtime"].startswith("LiteRT.js 2.5.3") and row["latency_ms"]["p50"] > 0


def test_litert_js_on_webgpu_gives_what_it_gives_in_webassembly(run_cli, litert_runtime, checkpoint, tmp_path):
    """The page's WebGPU path (LiteRT.js's WebGPU accelerator) on whatever adapter the browser
    offers (here SwiftShader, a software GPU): the same output as WebAssembly, and timed only
    once the GPU has finished (its run returns when the work is queued)."""
    from crd_edge.errors import UserError
    from crd_edge.runtime.browser_session import BrowserSession
    run_cli("export", checkpoint, "--target", "web-litert", "--size", "64", "--out", tmp_path / "exp")
    folder = tmp_path / "exp" / "student_64_fp32.litert.web"
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with BrowserSession(folder) as wasm:
        expected = wasm.run(x)
    try:
        gpu = BrowserSession(folder, backend="webgpu")
    except UserError as exc:
        if "no WebGPU adapter" in str(exc):
            pytest.skip("this Chromium offers no WebGPU adapter, not even SwiftShader")
        raise
    import time
    with gpu:
        assert gpu.runtime.startswith("LiteRT.js 2.5.3 (webgpu")
        assert np.abs(gpu.run(x) - expected).max() < 1e-3
        started = time.perf_counter()
        gpu.run(x)  # one call from here: the GPU's work, its read-back and the page's round trip
        round_trip_ms = (time.perf_counter() - started) * 1e3
        timings = gpu.time_runs(warmup=0, runs=3, max_seconds=0.1, warmup_seconds=0)
    # Each timed call waits for the GPU (SwiftShader: about 290 ms a call, round trip alike); timing
    # only the queueing would take a few ms.
    assert len(timings["samples_ms"]) == 3 and min(timings["samples_ms"]) > 0.5 * round_trip_ms


def test_the_browser_session_runs_like_any_other(web_runtime, checkpoint, tmp_path, run_cli):
    from crd_edge.runtime import open_session
    run_cli("export", checkpoint, "--target", "web", "--size", "64", "--out", tmp_path / "exp")
    onnx_out = tmp_path / "exp" / "student_64_fp32.web" / "model.onnx"
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with open_session(tmp_path / "exp" / "student_64_fp32.web") as browser:
        assert browser.input_shape == (1, 3, 64, 64)
        first, second = browser.run(x), browser.run(-x)  # two calls through the same page
    expected = open_session(onnx_out).run(x)
    assert first.shape == (1, 3, 64, 64) and np.abs(first - expected).max() < 1e-4
    assert np.abs(second - first).max() > 1e-3


def test_without_the_runtime_the_web_target_names_the_command_and_all_skips_it(run_cli, checkpoint, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    code, _, err = run_cli("export", checkpoint, "--target", "web", "--size", "64", "--out", tmp_path / "one")
    assert code == 2 and "crd-edge assets install onnxruntime-web" in err and "Traceback" not in err
    code, out, err = run_cli("export", checkpoint, "--target", "web,onnx", "--size", "64", "--out", tmp_path / "two")
    assert code == 0 and "web fp32: skipped" in err and "crd-edge assets install onnxruntime-web" in out
    assert [r["target"] for r in json.loads((tmp_path / "two" / "manifest.json").read_text())["artifacts"]] == ["onnx"]


def _y4m(path: Path, frames: list[np.ndarray]) -> None:
    """A raw video file Chromium's fake camera plays (YUV4MPEG2, 4:2:0)."""
    import cv2
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.mark.parametrize("target", ["web", "web-litert"])
def test_the_demo_page_shows_transformed_camera_frames(target, checkpoint, tmp_path, run_cli, request):
    """The folder served by `python -m http.server`, opened in headless Chromium whose fake camera
    plays a photo: frames come out through the student, side by side with the input, with FPS
    and no error in the page's console; with either runtime."""
    import subprocess
    import sys
    import time

    import cv2

    from chromium_pipe import Chromium
    from crd_edge.data.builtin import builtin_split
    from crd_edge.runtime import open_session
    request.getfixturevalue("web_runtime" if target == "web" else "litert_runtime")
    run_cli("export", checkpoint, "--target", target, "--size", "64", "--out", tmp_path / "exp")
    folder = tmp_path / "exp" / ("student_64_fp32.web" if target == "web" else "student_64_fp32.litert.web")
    onnx_file = tmp_path / "exp" / "student_64_fp32.onnx"
    run_cli("export", checkpoint, "--target", "onnx", "--size", "64", "--out", tmp_path / "exp")
    photo = cv2.resize(np.ascontiguousarray(builtin_split("test")[0].image), (320, 240), interpolation=cv2.INTER_AREA)
    _y4m(tmp_path / "camera.y4m", [photo] * 3)
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"], cwd=folder,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = None
    try:
        port = int(server.stdout.readline().split("port ")[1].split()[0])
        browser = Chromium(find_chromium(), f"http://127.0.0.1:{port}/index.html?camera", str(tmp_path / "profile"),
                           "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                           f"--use-file-for-fake-video-capture={tmp_path / 'camera.y4m'}")
        status, deadline = "", time.time() + 90
        while "FPS" not in status and time.time() < deadline:
            time.sleep(0.5)
            status = browser.evaluate("document.getElementById('status').textContent")
        assert "FPS" in status and "320x240" in status and "WebAssembly, 1 thread" in status, status
        pixels = browser.evaluate("""[...['input', 'output'].map((id) => {
            const c = document.getElementById(id);
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })]""")
        assert browser.errors() == []
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
    shown, out = (np.array(p, np.uint8).reshape(240, 320, 4)[..., :3] for p in pixels)
    assert np.abs(shown.astype(int) - photo.astype(int)).mean() < 12  # the camera's frame (through YUV 4:2:0)
    # The output panel is the student's output for that frame at the model's 64 px, drawn at 320x240.
    x = cv2.resize(shown, (64, 64), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)[None] / 127.5 - 1
    expected = open_session(onnx_file).run(x.astype(np.float32))[0].transpose(1, 2, 0)
    expected = cv2.resize(np.clip((expected + 1) * 127.5, 0, 255).astype(np.uint8), (320, 240))
    mse = ((out.astype(float) - expected) ** 2).mean()
    assert 10 * np.log10(255 ** 2 / mse) > 22, "the output panel is not the student's output"
    assert np.abs(out.astype(int) - shown.astype(int)).mean() > 5  # transformed, not the input again


def test_bench_on_browser_times_the_web_export_inside_the_page(web_runtime, checkpoint, tmp_path, run_cli):
    """`bench --on browser`: the web artifact timed in headless Chromium (p50/p90 in the same
    report as native rows); the other artifacts are skipped there with the runner that times
    them, and the local harness skips the web artifact naming --on browser."""
    run_cli("export", checkpoint, "--target", "web,onnx", "--size", "64", "--out", tmp_path / "exp")
    code, out, err = run_cli("bench", tmp_path / "exp", "--on", "browser", "--on", "local", "--warmup", "1",
                             "--runs", "6", "--max-seconds", "2", "--no-roofline", "--no-op-profile",
                             "--out", tmp_path / "bench")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    by = {(r["device_spec"], r["artifact"]["target"]): r for r in rows}
    web = by[("browser", "web")]
    assert web["status"] == "measured", web
    assert web["runtime"].startswith("onnxruntime-web 1.31.1 (wasm") and "Chromium" not in web["runtime"]
    assert web["latency_ms"]["n"] == 6 and 0 < web["latency_ms"]["p50"] <= web["latency_ms"]["p90"]
    assert web["input_size"] == [64, 64] and web["load_ms"] > 0 and web["model"]["macs_true"] > 0
    assert web["device"]["kind"] == "browser" and web["device"]["browser"].startswith("Chromium")
    assert by[("browser", "onnx")]["status"] == "skipped" and "--target web" in by[("browser", "onnx")]["reason"]
    assert by[("local", "onnx")]["status"] == "measured"
    assert by[("local", "web")]["status"] == "skipped" and "--on browser" in by[("local", "web")]["reason"]
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "## Chromium" in report and "student_64_fp32.web" in report


def test_demo_web_serves_the_folder_cross_origin_isolated(web_runtime, checkpoint, tmp_path, run_cli):
    """`demo --web DIR` serves the export on 127.0.0.1 with COOP/COEP: the demo page gets
    WebAssembly threads (a plain static server gives it one), files outside the folder stay
    out of reach, and SIGTERM ends it cleanly."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from chromium_pipe import Chromium
    run_cli("export", checkpoint, "--target", "web", "--size", "64", "--out", tmp_path / "exp")
    (tmp_path / "secret.txt").write_text("not for the page")
    server = subprocess.Popen([sys.executable, "-m", "crd_edge", "demo", "--web", str(tmp_path / "exp"),
                               "--serve", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    browser = None
    try:
        line = server.stderr.readline()
        assert "student_64_fp32.web" in line and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url) as page:
            assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert page.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(url.replace("index.html", "ort/dist/ort-wasm-simd-threaded.mjs")) as module:
            assert module.headers["Content-Type"].startswith("text/javascript")
        for outside in ("../secret.txt", "%2e%2e/secret.txt", "..%2fsecret.txt"):
            try:
                with urllib.request.urlopen(url.replace("index.html", outside)) as leak:
                    assert b"not for the page" not in leak.read()
            except urllib.error.HTTPError as exc:
                assert exc.code == 404
        browser = Chromium(find_chromium(), url, str(tmp_path / "profile"))
        status, deadline = "", time.time() + 60
        while "ready" not in status and time.time() < deadline:
            time.sleep(0.5)
            status = browser.evaluate("document.getElementById('status').textContent")
        assert browser.evaluate("self.crossOriginIsolated") is True, status
        assert "ready (onnxruntime-web 1.31.1, WebAssembly" in status and browser.errors() == []
    finally:
        if browser is not None:
            browser.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0


def test_demo_web_refuses_what_it_cannot_serve(run_cli, tmp_path):
    code, _, err = run_cli("demo", "--web", tmp_path / "missing")
    assert code == 2 and "missing: no such folder" in err
    code, _, err = run_cli("demo", "--web", tmp_path)
    assert code == 2 and "no web export there" in err and "--target web" in err
    code, _, err = run_cli("demo", "--web", tmp_path, "--serve", "0.0.0.0:8000")
    assert code == 2 and "HTTPS" in err
    code, _, err = run_cli("demo")
    assert code == 2 and "--web DIR" in err


def test_the_pipeline_times_web_exports_in_the_browser_and_the_rest_here():
    from crd_edge.artifacts import Artifact
    from crd_edge.pipeline import _bench_plans

    def made(name: str, target: str) -> Artifact:
        return Artifact(Path(name), name.split("_")[0], target, "fp32")
    students = [made("student_fp32.onnx", "onnx"), made("student_fp32.web", "web"), made("student_fp32.tflite", "tflite")]
    teachers = [made("teacher_fp32.onnx", "onnx"), made("teacher_fp32.web", "web")]
    assert _bench_plans(students, teachers) == [
        ("local", ["student_fp32.onnx", "student_fp32.tflite"], ["teacher_fp32.onnx"]),
        ("browser", ["student_fp32.web"], ["teacher_fp32.web"])]
    assert _bench_plans(students[:1], []) == [("local", ["student_fp32.onnx"], [])]


def test_demo_web_takes_a_web_folder_of_either_runtime(tmp_path):
    from crd_edge.demo.web import web_folder
    for name in ("student_fp32.web", "student_fp32.litert.web"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "index.html").write_text("<!doctype html>")
        (folder / "model.json").write_text("{}")
        assert web_folder(folder) == folder
