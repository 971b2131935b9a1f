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
from crd_edge.demo.models import DemoModel, open_model
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
    if options.fit not in FITS:
        raise UserError(f"--fit {options.fit}: expected one of {', '.join(FITS)}")
    if options.max_frames is not None and options.max_frames < 1:
        raise UserError(f"--max-frames {options.max_frames}: must be at least 1")
    spec = parse_source(options.source)
    sink = VideoFileSink(options.output) if options.output else None  # a bad --output fails first
    model = open_model(options.model, options.runtime, options.size, options.threads)
    teacher = None
    if options.compare:
        teacher = open_model(options.compare, "auto", model.size, options.threads, size_option="the student's size")
    window, can_show, why = None, False, ""
    if options.window is not False:
        can_show, why = window_available()
        if options.window and not can_show:
            raise UserError(f"--window: {why}; use --output or --serve instead")
    server = MjpegServer(options.serve, title=model.label) if options.serve else None  # a busy port fails here
    try:
        cap, first = open_capture(spec)  # last: a bad model or port fails before the camera turns on
    except UserError:
        if server:
            server.close()
        raise
    if options.window is not False:
        window = WindowSink() if can_show else None
        if window is None and not (options.output or options.serve):
            log(f"note: no window ({why}); frames are only counted. Add --output FILE or --serve HOST:PORT to see them")
    reader = FrameReader(cap, first, live=spec.live, loop=options.loop)
    if sink:
        sink.set_fps(reader.fps)
    summary = DemoSummary(model.label, teacher.label if teacher else None, spec.text, model.size,
                          url=server.url if server else None)
    log(f"demo: {model.label} at {model.size[0]}x{model.size[1]}"
        + (f" vs {teacher.label}" if teacher else "") + f" on {spec.text}"
        + (f"; serving {server.url}" if server else "") + (f"; writing {options.output}" if sink else ""))
    rate, paused, composed, ok = SmoothedRate(), False, None, False
    reader.start()
    started = last = time.perf_counter()
    try:
        while True:
            if stop is not None and stop.is_set():
                summary.ended = "stopped"
                break
            if not paused:
                frame = reader.read()
                if frame is None:
                    summary.ended = "end of video" if not spec.live else "source lost"
                    break
                fitted = fit_frame(frame, model.size, options.fit)
                x = to_model_input(fitted)
                y, ms = _timed(model, x)
                summary.latencies_ms.append(ms)
                panels = [(from_model_output(y), model.label, f"{ms:.1f} ms")]
                if teacher is not None:
                    y_teacher, teacher_ms = _timed(teacher, x)
                    summary.teacher_latencies_ms.append(teacher_ms)
                    panels.append((from_model_output(y_teacher), teacher.label, f"{teacher_ms:.0f} ms"))
                now = time.perf_counter()
                fps = rate.update(now - last)
                last = now
                composed = compose([(fitted, f"input  {fps:.1f} FPS", ""), *panels])
                summary.frames += 1
                if sink:
                    sink.write(composed)
                if server:
                    server.write(composed, {"frames": summary.frames, "fps": fps, "latency_ms": ms})
                if on_frame:
                    on_frame(composed)
            if window is not None:
                window.write(composed)
                key = window.poll_key()
                if key == "quit":
                    summary.ended = "quit"
                    break
                if key == "pause":
                    paused = not paused
                if key == "snapshot":
                    log(f"snapshot: {_save_snapshot(composed, options.snapshot_dir)}")
                if paused:
                    time.sleep(0.02)
            if options.max_frames and summary.frames >= options.max_frames:
                summary.ended = "max frames"
                break
        ok = True
    except KeyboardInterrupt:
        summary.ended, ok = "interrupted", True
    finally:
        summary.seconds = time.perf_counter() - started
        summary.dropped = reader.dropped
        reader.stop()
        if server:
            server.close()
        if window is not None:
            window.close()
        if sink:
            written = sink.close(keep=ok)
            summary.output = str(written) if written else None
    return summary
