"""`crd-edge demo`, headless: a video made from real built-in photos runs through the demo into
--output (frame count, size, student panel equal to the model run on those frames), --compare,
the MJPEG server seen by a real headless Chromium, frame dropping of live sources, the frame
maths, and one-line errors for bad cameras, files, sizes, ports and outputs."""

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch

from crd_edge.data.builtin import builtin_photos
from crd_edge.models import create_model
from crd_edge._io import atomic_torch_save
from crd_edge.checkpoint import student_record

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from crd_edge.demo import DemoOptions, run_demo  # noqa: E402
from crd_edge.demo.capture import FrameReader  # noqa: E402
from crd_edge.demo.frames import HEADER, panel_box  # noqa: E402
from crd_edge.imaging import fit_frame, from_model_output, to_model_input  # noqa: E402
from crd_edge.demo.sinks import window_available  # noqa: E402
from crd_edge.runtime import open_session  # noqa: E402

SIZE = 64
FRAMES = 12


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 12-frame MJPG video panning across real built-in photos (160x120, 4:3 like a webcam)."""
    path = tmp_path_factory.mktemp("video") / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    assert writer.isOpened()
    photos = [p.image for p in builtin_photos()[:3]]
    for i in range(FRAMES):
        rgb = photos[i // 4]
        h, w = rgb.shape[:2]
        top, left = (i % 4) * (h - 240) // 4, (i % 4) * (w - 320) // 4
        crop = cv2.resize(np.ascontiguousarray(rgb[top:top + 240, left:left + 320]), (160, 120),
                          interpolation=cv2.INTER_AREA)
        writer.write(crop[:, :, ::-1].copy())
    writer.release()
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A small student checkpoint and its verified ONNX export at 64x64."""
    from crd_edge.export.run import export
    folder = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    model = create_model("mobile_resnet_9blocks", ngf=8, upsample="convt4", input_skip=True).eval()
    # Like a trained style model: a smooth colour change of the input (a random network's output is
    # pixel noise, which no lossy video codec keeps); the whole network still runs.
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(0.05)
        last.bias.copy_(torch.tensor([0.4, -0.1, -0.4]))
    atomic_torch_save({"format_version": 1, "student": student_record(model, SIZE)}, folder / "checkpoint.pt")
    results = list(export(folder / "checkpoint.pt", "onnx", "fp32", out_dir=folder / "export"))
    assert results[0].status == "passed"
    return folder


def _decoded_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_output_holds_every_frame_and_the_models_translation(run_cli, video, student, tmp_path):
    onnx = student / "export" / "student_64_fp32.onnx"
    out = tmp_path / "demo.avi"
    code, stdout, err = run_cli("demo", onnx, "--source", video, "--output", out, "--no-window", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == FRAMES and summary["ended"] == "end of video" and summary["fps"] > 0
    assert summary["latency_p50_ms"] > 0 and summary["output"] == str(out)
    assert not list(tmp_path.glob(".*partial*")), "the temporary file was renamed"
    written, source = _decoded_frames(out), _decoded_frames(video)
    assert len(written) == FRAMES
    assert written[0].shape == (HEADER + SIZE, 2 * SIZE, 3)
    session = open_session(onnx)
    rows, cols = panel_box(1, [SIZE, SIZE], SIZE)
    in_rows, in_cols = panel_box(0, [SIZE, SIZE], SIZE)
    for shown, frame in zip(written, source):
        fitted = fit_frame(frame, (SIZE, SIZE), "crop")
        expected = from_model_output(session.run(to_model_input(fitted)))
        # MJPG keeps 30-35 dB of these 64-pixel panels here; the input copied would score 18-21 dB.
        assert _psnr(shown[rows, cols], expected) > 27
        assert _psnr(shown[in_rows, in_cols], fitted) > 27
        assert _psnr(shown[rows, cols], expected) > _psnr(shown[rows, cols], fitted) + 5


def test_compare_adds_a_teacher_panel_and_max_frames_stops(run_cli, video, student, tiny_teacher, tmp_path):
    out = tmp_path / "cmp.mp4"
    code, stdout, err = run_cli("demo", student / "checkpoint.pt", "--source", video, "--compare", tiny_teacher,
                                "--output", out, "--max-frames", "5", "--no-window", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["frames"] == 5 and summary["ended"] == "max frames"
    assert summary["teacher"].startswith("teacher torch") and summary["teacher_latency_p50_ms"] > 0
    written = _decoded_frames(out)
    assert len(written) == 5 and written[0].shape == (HEADER + SIZE, 3 * SIZE, 3)


def test_gif_and_png_strip_outputs_for_readmes(video, student, tmp_path):
    from PIL import Image
    out = tmp_path / "demo.gif"
    summary = run_demo(DemoOptions(str(student / "checkpoint.pt"), source=str(video), output=out, window=False),
                       log=lambda line: None)
    assert summary.output == str(out)
    with Image.open(out) as gif:
        assert gif.n_frames == FRAMES and gif.size == (2 * SIZE, HEADER + SIZE)
    strip = tmp_path / "strip.png"
    run_demo(DemoOptions(str(student / "checkpoint.pt"), source=str(video), output=strip, window=False),
             log=lambda line: None)
    composed = []
    run_demo(DemoOptions(str(student / "checkpoint.pt"), source=str(video), window=False), log=lambda line: None,
             on_frame=composed.append)
    rows = np.asarray(Image.open(strip))[:, :, ::-1].reshape(4, HEADER + SIZE, 2 * SIZE, 3)
    for row, index in zip(rows, (0, 4, 7, 11)):  # evenly spaced over 12 frames, first and last included
        assert np.array_equal(row[HEADER:], composed[index][HEADER:])  # (the bars hold the FPS of that run)


def test_png_strip_of_a_long_run_keeps_an_even_sample(tmp_path):
    # 1000 frames (more than a .gif may hold): the strip still shows the first, the last and two
    # frames between them, from a bounded sample. Frame k is filled with k % 251.
    from PIL import Image

    from crd_edge.demo.sinks import STRIP_SAMPLE, VideoFileSink
    sink = VideoFileSink(tmp_path / "long.png")
    for k in range(1000):
        sink.write(np.full((8, 8, 3), k % 251, np.uint8))
    assert len(sink._gif) <= STRIP_SAMPLE + 1
    assert sink.close() == tmp_path / "long.png"
    values = np.asarray(Image.open(tmp_path / "long.png"))[::8, 0, 0]
    assert values[0] == 0 and values[-1] == 999 % 251 and len(values) == 4
    assert 0 < values[1] < values[2]  # in between, in order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Served(str):
    """The page's URL, carrying the model that is being served."""

    def __new__(cls, url, model):
        obj = super().__new__(cls, url)
        obj.model = model
        return obj


@pytest.fixture
def served(video, student):
    """The demo serving on 127.0.0.1 in a thread (the video looping) until the test ends."""
    port, stop, lines = _free_port(), threading.Event(), []
    options = DemoOptions(str(student / "checkpoint.pt"), source=str(video), serve=f"127.0.0.1:{port}",
                          window=False, loop=True)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", run_demo(options, lines.append, stop)))
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if json.loads(urllib.request.urlopen(url + "stats.json", timeout=2).read())["frames"] > 2:
                break
        except OSError:
            pass
        time.sleep(0.1)
    yield _Served(url, student / "checkpoint.pt")
    stop.set()
    thread.join(timeout=10)
    assert result["summary"].ended == "stopped" and result["summary"].frames > 2


def test_mjpeg_stream_serves_jpeg_frames(served):
    with urllib.request.urlopen(served + "stream.mjpg", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        chunk = response.read(4096)
    assert b"Content-Type: image/jpeg" in chunk and b"\xff\xd8" in chunk  # a JPEG starts
    frame = cv2.imdecode(np.frombuffer(urllib.request.urlopen(served + "frame.jpg", timeout=5).read(), np.uint8),
                         cv2.IMREAD_COLOR)
    assert frame.shape == (HEADER + SIZE, 2 * SIZE, 3)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/install.sh --test-tools installs Debian's)")
def test_headless_chromium_shows_the_translated_stream(served, tmp_path):
    shot = tmp_path / "page.png"
    # --timeout: take the screenshot after 3 s; an MJPEG <img> never finishes loading.
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=400,300", "--timeout=3000",
                    f"--screenshot={shot}", served], check=True, capture_output=True, timeout=90)
    page = cv2.imread(str(shot))
    shown = page[32:32 + HEADER + SIZE, :2 * SIZE]  # the page puts the stream under a 32-pixel header
    latest = cv2.imdecode(np.frombuffer(urllib.request.urlopen(served + "frame.jpg", timeout=5).read(), np.uint8),
                          cv2.IMREAD_COLOR)
    # The stream is where the page promises: the top rows of its label bars (gray 32, above the
    # text) right under the header (the page's #111 background).
    assert np.median(np.abs(shown[1:4].astype(int) - 32)) <= 5  # (JPEG rings near the text; 17 would be off by 15)
    assert np.median(np.abs(page[26:30, :2 * SIZE].astype(int) - 17)) <= 3
    assert latest.shape == shown.shape
    rows, cols = panel_box(1, [SIZE, SIZE], SIZE)
    in_rows, in_cols = panel_box(0, [SIZE, SIZE], SIZE)
    translated, seen_input = shown[rows, cols], shown[in_rows, in_cols]
    assert translated.std() > 10, "the translated panel is blank"
    # ... and it is the model's translation of the input panel beside it (both went through JPEG).
    expected = from_model_output(open_session(served.model).run(to_model_input(seen_input)))
    assert _psnr(translated, expected) > 25 > _psnr(translated, seen_input)


class _FastCamera:
    """A stand-in camera delivering numbered frames as fast as it is read (no real camera here)."""

    def __init__(self) -> None:
        self.count = 0

    def read(self):
        time.sleep(0.001)
        self.count += 1
        return True, np.full((4, 4, 3), self.count % 256, np.uint8)

    def get(self, prop):
        return 30.0

    def release(self):
        pass


def test_live_source_drops_old_frames_instead_of_lagging():
    camera = _FastCamera()
    reader = FrameReader(camera, np.zeros((4, 4, 3), np.uint8), live=True).start()
    reader.read()
    time.sleep(0.2)  # a slow model: the camera delivers many frames meanwhile
    newest = int(reader.read()[0, 0, 0])
    reader.stop()
    assert reader.dropped > 10
    assert newest >= (camera.count - 2) % 256 or camera.count % 256 < 3  # the newest frame, not the next in line


def test_fit_frame_crops_pads_and_stretches():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 50:150] = 255  # the centre square is white, the sides black
    assert fit_frame(frame, (50, 50), "crop").min() == 255
    padded = fit_frame(frame, (50, 50), "pad")
    assert padded[:12].max() == 0 and padded[-12:].max() == 0 and padded[25, 25].min() == 255
    stretched = fit_frame(frame, (50, 50), "stretch")
    assert stretched[:, :10].max() == 0 and stretched[:, 20:30].min() == 255


def test_model_io_round_trip_is_exact():
    bgr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = to_model_input(bgr)
    assert x.shape == (1, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.allclose(x[0, 0], bgr[:, :, 2] / 127.5 - 1, atol=1e-6)  # RGB order for the model
    assert np.array_equal(from_model_output(x), bgr)
    assert from_model_output(np.full((1, 3, 1, 1), 0.999, np.float32))[0, 0, 0] == 255  # rounded, not truncated


@pytest.mark.parametrize("gui,display,expected", [
    ("NONE", ":0", "no GUI"),                       # the headless build, display or not
    ("GTK3", None, "no display"),                   # a GUI build without a display
    ("GTK3", ":0", ""),                             # a GUI build with one: a window may open
])
def test_window_availability(monkeypatch, gui, display, expected):
    from crd_edge._deps import import_cv2
    cv2 = import_cv2()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: f"  Video I/O:\n  GUI:                           {gui}\n")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display:
        monkeypatch.setenv("DISPLAY", display)
    else:
        monkeypatch.delenv("DISPLAY", raising=False)
    available, why = window_available()
    assert available == (expected == "") and expected in why


def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    return path


@pytest.mark.parametrize("args, message", [
    (["--source", "99"], "camera cannot be opened"),
    (["--source", "/dev/video99"], "no such camera device"),
    (["--source", "{tmp}/missing.mp4"], "no such video file"),
    (["--source", "{notavideo}"], "not a video"),
    (["--size", "128"], "takes 64x64 input, not 128x128"),
    (["--output", "{tmp}/out.jpg"], "unsupported video type .jpg"),
    (["--output", "{tmp}/nofolder/out.mp4"], "does not exist"),
    (["--runtime", "litert"], "cannot run with --runtime litert"),
    (["--fit", "zoom"], "--fit zoom"),
    (["--window"], "--window:"),
    (["--serve", "localhost"], "expected HOST:PORT"),
])
def test_bad_demo_input_is_one_line(run_cli, video, student, tmp_path, monkeypatch, args, message):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    args = [a.format(tmp=tmp_path, notavideo=_not_a_video(tmp_path)) for a in args]
    if "--source" not in args:
        args += ["--source", str(video)]
    code, out, err = run_cli("demo", student / "export" / "student_64_fp32.onnx", *args)
    assert code == 2, err
    assert message in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*partial*"))


def test_port_in_use_is_one_line(run_cli, video, student):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_cli("demo", student / "checkpoint.pt", "--source", video, "--serve", f"127.0.0.1:{port}")
    assert code == 2 and f"port {port} is in use" in err and len(err.strip().splitlines()) == 1


def test_missing_model_is_one_line(run_cli, video, tmp_path):
    code, out, err = run_cli("demo", tmp_path / "nothing.onnx", "--source", video)
    assert code == 2 and "no such model" in err


def test_sigterm_finishes_the_video_and_prints_the_summary(video, student, tmp_path):
    import signal
    import sys
    out = tmp_path / "looped.avi"
    proc = subprocess.Popen([sys.executable, "-m", "crd_edge.cli", "demo", str(student / "checkpoint.pt"),
                             "--source", str(video), "--loop", "--output", str(out), "--no-window", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".looped.partial.avi")):
        time.sleep(0.2)
    time.sleep(1.0)  # some frames into the loop
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["ended"] == "interrupted" and summary["frames"] > 0
    assert len(_decoded_frames(out)) == summary["frames"] and not list(tmp_path.glob(".*partial*"))
