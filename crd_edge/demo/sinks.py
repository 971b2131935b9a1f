"""Where composed frames go: a video file (.mp4/.avi/.mkv through OpenCV, .gif through Pillow),
a still strip (.png: a few frames evenly spaced over the run, stacked; for READMEs) or a
desktop window. Files are written under a temporary name and renamed when complete, so an
interrupted demo never leaves a truncated file under the requested name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from crd_edge._deps import import_cv2
from crd_edge.errors import UserError

_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
GIF_MAX_FRAMES = 600  # a GIF holds every frame in memory until the end
STRIP_ROWS = 4
STRIP_SAMPLE = 64     # a strip keeps at most this many evenly spaced frames, however long the run


class VideoFileSink:
    """Writes frames to ``path``; the container comes from the suffix (.mp4, .avi, .mkv, .gif, .png)."""

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (*_FOURCC, ".gif", ".png"):
            raise UserError(f"--output {path}: unsupported video type {suffix or '(none)'}; "
                            "use .mp4, .avi, .mkv, .gif (animation) or .png (a strip of frames)")
        if not self.path.parent.is_dir():
            raise UserError(f"--output {path}: folder {self.path.parent} does not exist")
        self.set_fps(fps)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.frames = 0
        self._writer = None
        self._gif: list = []          # .gif: every frame; .png: every _stride-th frame
        self._stride = 1
        self._last = None             # .png: the newest frame, so the strip ends on the last one

    def set_fps(self, fps: float) -> None:
        """The source's frame rate (cameras and some files report 0 or nonsense: 25 then)."""
        self.fps = fps if 1 <= fps <= 120 else 25.0

    def write(self, frame: np.ndarray) -> None:
        suffix = self.path.suffix.lower()
        if suffix == ".gif":
            if len(self._gif) >= GIF_MAX_FRAMES:
                raise UserError(f"--output {self.path}: a .gif holds at most {GIF_MAX_FRAMES} "
                                "frames; use --max-frames or write .mp4")
            self._gif.append(frame.copy())  # the caller may reuse its buffer
        elif suffix == ".png":
            # Evenly spaced sample of any length of run: when full, drop every other frame kept
            # and keep every 2x-th frame from then on.
            self._last = frame.copy()  # the caller may reuse its buffer
            if self.frames % self._stride == 0:
                self._gif.append(self._last)
                if len(self._gif) > STRIP_SAMPLE:
                    self._gif, self._stride = self._gif[::2], self._stride * 2
        else:
            if self._writer is None:
                self._writer = self._open(frame.shape[1], frame.shape[0])
            self._writer.write(frame)
        self.frames += 1

    def _strip(self):
        """Up to STRIP_ROWS frames, evenly spaced from the first to the last, stacked vertically."""
        from PIL import Image
        frames = self._gif if self._gif[-1] is self._last else [*self._gif, self._last]
        count = min(STRIP_ROWS, len(frames))
        picks = [round(i * (len(frames) - 1) / max(count - 1, 1)) for i in range(count)]
        return Image.fromarray(np.concatenate([frames[i][:, :, ::-1] for i in picks], axis=0))

    def _open(self, width: int, height: int):
        cv2 = import_cv2()
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*_FOURCC[self.path.suffix.lower()]),
                                 self.fps, (width, height))
        if not writer.isOpened():
            raise UserError(f"--output {self.path}: OpenCV cannot write this video type here; try .avi")
        return writer

    def close(self, keep: bool = True) -> Path | None:
        """Finish the file; ``keep`` False (nothing written, or an error) removes it."""
        if self._writer is not None:
            self._writer.release()
        if self._gif and keep and self.path.suffix.lower() == ".gif":
            from PIL import Image
            images = [Image.fromarray(f[:, :, ::-1]) for f in self._gif]
            images[0].save(self.tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=round(1000 / self.fps), loop=0, optimize=True)
        elif self._gif and keep:
            self._strip().save(self.tmp, format="PNG", optimize=True)
        if keep and self.frames and self.tmp.exists():
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return None


def window_available() -> tuple[bool, str]:
    """Whether a window can be opened, checked *before* opening one: opencv-python without a
    display aborts the whole process in imshow, and the headless build has no GUI at all."""
    cv2 = import_cv2()
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if not gui or gui.upper() == "NONE":
        return False, "this OpenCV has no GUI (opencv-python-headless); install opencv-python for a window"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    return True, ""


class WindowSink:
    """A desktop window. Keys: q or Esc quits, s saves a snapshot, space pauses."""

    def __init__(self, title: str = "crd-edge demo") -> None:
        self.cv2 = import_cv2()
        self.title = title
        self.cv2.namedWindow(title, self.cv2.WINDOW_AUTOSIZE)

    def write(self, frame: np.ndarray) -> None:
        self.cv2.imshow(self.title, frame)

    def poll_key(self) -> str | None:
        """'quit', 'snapshot', 'pause' or None, from the keyboard or the window's close button."""
        key = self.cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return "quit"
        if key == ord("s"):
            return "snapshot"
        if key == ord(" "):
            return "pause"
        if self.cv2.getWindowProperty(self.title, self.cv2.WND_PROP_VISIBLE) < 1:
            return "quit"
        return None

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)
