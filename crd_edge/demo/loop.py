"""The demo loop, top to bottom: read a frame, fit it to the model, run the student (and the
teacher with --compare), compose the panels with FPS and latency, hand the frame to the window,
the video file and the MJPEG server; stop at the end of the video, at --max-frames, on q or Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from crd_edge._deps import import_cv2
from crd_edge.demo.capture import FrameReader, open_capture, parse_source
from crd_edge.demo.frames import SmoothedRate, compose
from crd_edge.imaging import FITS, fit_frame, from_model_output, to_model_input
from crd_edge.demo.models import DemoModel, open_demo_model
from crd_edge.demo.server import MjpegServer
from crd_edge.demo.sinks import VideoFileSink, WindowSink, window_available
from crd_edge.errors import UserError


@dataclass
class DemoOptions:
    model: str
    source: str = "0"
    runtime: str = "auto"
    compare: str | None = None          # a teacher (artifact, checkpoint, 'vintagify') for a third panel
    size: tuple[int, int] | None = None  # None: the model's own input size
    fit: str = "crop"
    output: Path | None = None
    serve: str | None = None
    window: bool | None = None          # None: open one when this machine can show it
    max_frames: int | None = None
    threads: int | None = None
    loop: bool = False                  # replay a video file until stopped
    snapshot_dir: Path = Path(".")


@dataclass
class DemoSummary:
    model: str
    teacher: str | None
    source: str
    size: tuple[int, int]
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    ended: str = ""                     # end of video | max frames | quit | interrupted | stopped | source lost
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    teacher_latencies_ms: list[float] = field(default_factory=list, repr=False)
    output: str | None = None
    url: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @staticmethod
    def _p50(values: list[float]) -> float | None:
        return float(np.median(values)) if values else None

    def to_dict(self) -> dict:
        record = {k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "teacher_latencies_ms")}
        record.update(fps=round(self.fps, 2), latency_p50_ms=self._p50(self.latencies_ms),
                      teacher_latency_p50_ms=self._p50(self.teacher_latencies_ms))
        return record

    def render(self) -> str:
        line = (f"{self.frames} frames in {self.seconds:.1f} s ({self.ended}): {self.fps:.1f} FPS end to end, "
                f"{self.model} p50 {self._p50(self.latencies_ms) or 0:.1f} ms")
        if self.teacher:
            line += f", {self.teacher} p50 {self._p50(self.teacher_latencies_ms) or 0:.1f} ms"
        if self.dropped:
            line += f"; {self.dropped} camera frames dropped (model slower than the camera)"
        if self.output:
            line += f"; video: {self.output}"
        return line


def _timed(model: DemoModel, x: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    y = model.run(x)
    return y, (time.perf_counter() - start) * 1000


def _save_snapshot(frame: np.ndarray, folder: Path) -> Path:
    cv2 = import_cv2()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / time.strftime("crd-edge-demo-%Y%m%d-%H%M%S.png")
    ok, buf = cv2.imencode(".png", frame)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    return path


def run_demo(options: DemoOptions, log: Callable[[str], None] = print, stop: threading.Event | None = None,
             on_frame: Callable[[np.ndarray], None] | None = None) -> DemoSummary:
    """Run the demo until the source ends, ``max_frames``, a quit key, Ctrl-C or ``stop`` is set."""
    _check_options(options)
    spec = parse_source(options.source)
    sink = VideoFileSink(options.output) if options.output else None  # a bad --output fails first
    model, teacher = _open_models(options)
    can_show, why = _window_check(options)
    server = MjpegServer(options.serve, title=model.label) if options.serve else None  # a busy port fails here
    cap, first = _open_capture(spec, server)  # last: a bad model or port fails before the camera turns on
    window = _open_window(options, can_show, why, log)
    reader = FrameReader(cap, first, live=spec.live, loop=options.loop)
    if sink:
        sink.set_fps(reader.fps)
    summary = DemoSummary(model.label, teacher.label if teacher else None, spec.text, model.size,
                          url=server.url if server else None)
    log(f"demo: {model.label} at {model.size[0]}x{model.size[1]}"
        + (f" vs {teacher.label}" if teacher else "") + f" on {spec.text}"
        + (f"; serving {server.url}" if server else "") + (f"; writing {options.output}" if sink else ""))
    _DemoLoop(options, spec.live, model, teacher, reader, sink, server, window, summary, log, on_frame).run(stop)
    return summary


def _check_options(options: DemoOptions) -> None:
    if options.fit not in FITS:
        raise UserError(f"--fit {options.fit}: expected one of {', '.join(FITS)}")
    if options.max_frames is not None and options.max_frames < 1:
        raise UserError(f"--max-frames {options.max_frames}: must be at least 1")


def _open_models(options: DemoOptions) -> tuple[DemoModel, DemoModel | None]:
    """The student, and the teacher of --compare at the student's size (the panels sit side by side)."""
    model = open_demo_model(options.model, options.runtime, options.size, options.threads)
    teacher = None
    if options.compare:
        teacher = open_demo_model(options.compare, "auto", model.size, options.threads, size_option="the student's size")
    return model, teacher


def _window_check(options: DemoOptions) -> tuple[bool, str]:
    """Whether a window can be shown and why not; checked before the server and camera start, so
    an explicit --window that cannot open fails before either."""
    can_show, why = False, ""
    if options.window is not False:
        can_show, why = window_available()
        if options.window and not can_show:
            raise UserError(f"--window: {why}; use --output or --serve instead")
    return can_show, why


def _open_capture(spec, server: MjpegServer | None):
    """The source's capture and first frame; a source that fails frees the server's port."""
    try:
        return open_capture(spec)
    except UserError:
        if server:
            server.close()
        raise


def _open_window(options: DemoOptions, can_show: bool, why: str, log: Callable[[str], None]) -> WindowSink | None:
    if options.window is False:
        return None
    window = WindowSink() if can_show else None
    if window is None and not (options.output or options.serve):
        log(f"note: no window ({why}); frames are only counted. Add --output FILE or --serve HOST:PORT to see them")
    return window


class _DemoLoop:
    """The frame loop of one demo, with what lives from frame to frame: the FPS estimate, the
    pause, the last composed frame (a paused window keeps showing it)."""

    def __init__(self, options: DemoOptions, live: bool, model: DemoModel, teacher: DemoModel | None,
                 reader: FrameReader, sink: VideoFileSink | None, server: MjpegServer | None,
                 window: WindowSink | None, summary: DemoSummary, log: Callable[[str], None],
                 on_frame: Callable[[np.ndarray], None] | None):
        self.options, self.live, self.model, self.teacher = options, live, model, teacher
        self.reader, self.sink, self.server, self.window = reader, sink, server, window
        self.summary, self.log, self.on_frame = summary, log, on_frame
        self.rate, self.paused, self.composed = SmoothedRate(), False, None
        self.last = 0.0

    def run(self, stop: threading.Event | None) -> None:
        """Loop until it ends, then close every output; Ctrl-C is an ending like any other, so
        the video written so far is kept."""
        ok = False
        self.reader.start()
        started = self.last = time.perf_counter()
        try:
            self.summary.ended = self._loop(stop)
            ok = True
        except KeyboardInterrupt:
            self.summary.ended, ok = "interrupted", True
        finally:
            self.summary.seconds = time.perf_counter() - started
            self._close(keep=ok)

    def _loop(self, stop: threading.Event | None) -> str:
        """Frames until one of the endings; returns which (DemoSummary.ended)."""
        while True:
            if stop is not None and stop.is_set():
                return "stopped"
            if not self.paused:
                frame = self.reader.read()
                if frame is None:
                    return "end of video" if not self.live else "source lost"
                self._process(frame)
            if self.window is not None and self._window_key() == "quit":
                return "quit"
            if self.options.max_frames and self.summary.frames >= self.options.max_frames:
                return "max frames"

    def _process(self, frame: np.ndarray) -> None:
        """Fit, run the student (and teacher), compose the panels and hand them to every output."""
        fitted = fit_frame(frame, self.model.size, self.options.fit)
        x = to_model_input(fitted)
        y, ms = _timed(self.model, x)
        self.summary.latencies_ms.append(ms)
        panels = [(from_model_output(y), self.model.label, f"{ms:.1f} ms")]
        if self.teacher is not None:
            y_teacher, teacher_ms = _timed(self.teacher, x)
            self.summary.teacher_latencies_ms.append(teacher_ms)
            panels.append((from_model_output(y_teacher), self.teacher.label, f"{teacher_ms:.0f} ms"))
        now = time.perf_counter()
        fps = self.rate.update(now - self.last)
        self.last = now
        self.composed = compose([(fitted, f"input  {fps:.1f} FPS", ""), *panels])
        self.summary.frames += 1
        if self.sink:
            self.sink.write(self.composed)
        if self.server:
            self.server.write(self.composed, {"frames": self.summary.frames, "fps": fps, "latency_ms": ms})
        if self.on_frame:
            self.on_frame(self.composed)

    def _window_key(self) -> str | None:
        """Show the frame and act on the key pressed: pause toggles, a snapshot is saved; "quit"
        is left to the loop to end on."""
        self.window.write(self.composed)
        key = self.window.poll_key()
        if key == "quit":
            return key
        if key == "pause":
            self.paused = not self.paused
        if key == "snapshot":
            self.log(f"snapshot: {_save_snapshot(self.composed, self.options.snapshot_dir)}")
        if self.paused:
            time.sleep(0.02)  # a paused loop would otherwise spin on poll_key
        return key

    def _close(self, keep: bool) -> None:
        """Stop the reader and close each output; the video file is kept only after a clean end."""
        self.summary.dropped = self.reader.dropped
        self.reader.stop()
        if self.server:
            self.server.close()
        if self.window is not None:
            self.window.close()
        if self.sink:
            written = self.sink.close(keep=keep)
            self.summary.output = str(written) if written else None
