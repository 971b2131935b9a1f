"""Frame sources for the demo: a camera, a video file or a network stream, read in a thread.

A live source (camera, rtsp/http stream) keeps only its newest frame: when the model is slower
than the camera, old frames are dropped (and counted) instead of queueing up, so the picture
never lags behind the scene. A video file is read in order with a small prefetch queue and no
drops, so ``--output`` holds every frame of the input.
"""

from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge._deps import import_cv2
from crd_edge.errors import UserError

_STREAM = re.compile(r"^(rtsp|rtmp|https?|udp|tcp)://", re.IGNORECASE)


@dataclass(frozen=True)
class SourceSpec:
    """What ``--source`` named: a camera index or device, a stream URL, or a video file."""

    target: int | str     # what cv2.VideoCapture is given
    kind: str             # "camera" | "stream" | "file"
    text: str             # as the user wrote it, for messages

    @property
    def live(self) -> bool:
        return self.kind != "file"


def parse_source(text: str | int) -> SourceSpec:
    text = str(text).strip()
    if text.isdigit():
        return SourceSpec(int(text), "camera", text)
    if _STREAM.match(text):
        return SourceSpec(text, "stream", text)
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise UserError(f"--source {text}: no such camera device (ls /dev/video* lists the cameras)")
        return SourceSpec(text, "camera", text)
    path = Path(text)
    if not path.exists():
        raise UserError(f"--source {text}: no such video file, camera index (0, 1, ...) or stream URL")
    if path.is_dir():
        raise UserError(f"--source {text}: a folder, not a video file")
    return SourceSpec(str(path), "file", text)


def open_capture(spec: SourceSpec):
    """An opened cv2.VideoCapture that has delivered its first frame, and that frame."""
    cv2 = import_cv2()
    cap = cv2.VideoCapture(spec.target)
    if not cap.isOpened():
        cap.release()
        if spec.kind == "camera":
            raise UserError(f"--source {spec.text}: camera cannot be opened (not connected, in use by another "
                            "program, or no permission); try another index or /dev/videoN")
        if spec.kind == "stream":
            raise UserError(f"--source {spec.text}: stream cannot be opened (check the URL and the network)")
        raise UserError(f"--source {spec.text}: not a video OpenCV can read (try .mp4 or .avi)")
    ok, frame = cap.read()
    if not ok or frame is None or frame.ndim != 3:
        cap.release()
        what = "delivered no frame" if spec.live else "not a video OpenCV can read (no frame decoded)"
        raise UserError(f"--source {spec.text}: {what}")
    return cap, frame


class FrameReader:
    """Reads frames from an opened capture in a background thread.

    ``read()`` returns the next frame (BGR uint8), or None when the source has ended or the reader
    was stopped. ``dropped`` counts live frames replaced before the demo took them.
    """

    def __init__(self, cap, first_frame: np.ndarray, live: bool, loop: bool = False, prefetch: int = 4) -> None:
        self._cap = cap
        self._live = live
        self._loop = loop and not live
        self._stop = threading.Event()
        self._frames: queue.Queue = queue.Queue(maxsize=1 if live else prefetch)
        self._frames.put(first_frame)
        self.dropped = 0
        self.fps = float(cap.get(5) or 0.0)  # cv2.CAP_PROP_FPS; 0 when the source does not say
        self._thread = threading.Thread(target=self._run, name="crd-edge-capture", daemon=True)

    def start(self) -> "FrameReader":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if not ok and self._loop:
                self._cap.set(1, 0)  # cv2.CAP_PROP_POS_FRAMES: back to the first frame
                ok, frame = self._cap.read()
            if not ok:
                self._put(None)
                return
            self._put(frame)

    def _put(self, frame) -> None:
        if self._live:
            try:  # replace the frame nobody took yet: the newest frame wins
                self._frames.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            self._frames.put(frame)
            return
        while not self._stop.is_set():  # a file: wait for room, never drop
            try:
                self._frames.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, timeout: float = 10.0) -> np.ndarray | None:
        try:
            frame = self._frames.get(timeout=timeout)
        except queue.Empty:
            return None  # a live source that stopped delivering
        if frame is None:
            self._stop.set()
        return frame

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._cap.release()
