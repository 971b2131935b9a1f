"""Frame maths of the demo: fit a camera frame to the model's input, convert to and from the
model's NCHW [-1, 1] convention, and compose the labelled side-by-side panels."""

from __future__ import annotations

import numpy as np

from crd_edge._deps import import_cv2

FITS = ("crop", "pad", "stretch")
HEADER = 22          # pixels of label bar above each panel
_FONT_SCALE = 0.45


def fit_frame(frame: np.ndarray, size: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """``frame`` (H, W, 3) resized to ``size`` (height, width).

    crop: keep the aspect ratio and cut the centre (the default: no distortion, no borders);
    pad: keep the aspect ratio and letterbox with black; stretch: resize, distorting the aspect.
    """
    cv2 = import_cv2()
    height, width = size
    h, w = frame.shape[:2]
    if fit == "stretch":
        return _resize(cv2, frame, width, height)
    if fit == "crop":
        scale = max(height / h, width / w)
        crop_h, crop_w = min(h, round(height / scale)), min(w, round(width / scale))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        return _resize(cv2, frame[top:top + crop_h, left:left + crop_w], width, height)
    if fit == "pad":
        scale = min(height / h, width / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.zeros((height, width, 3), np.uint8)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[top:top + new_h, left:left + new_w] = _resize(cv2, frame, new_w, new_h)
        return out
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def _resize(cv2, image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    shrinking = width < image.shape[1] or height < image.shape[0]
    # INTER_AREA averages when shrinking (no aliasing from a 1080p camera); linear when growing.
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


# Per-frame conversions in float32. crd_edge.eval.images.to_uint8/from_uint8 compute the same in
# float64 (exact rounding for scoring); on this hot path that cost the demo 86 -> 71 FPS.
def to_model_input(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (1, 3, H, W) RGB float32 in [-1, 1] (the models' convention)."""
    rgb = bgr[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray((rgb / 127.5 - 1.0).transpose(2, 0, 1)[None])


def from_model_output(y: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) RGB in [-1, 1] -> (H, W, 3) BGR uint8, rounded (not truncated)."""
    rgb = np.clip((np.asarray(y[0], np.float32).transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)
    return np.ascontiguousarray(np.rint(rgb).astype(np.uint8)[:, :, ::-1])


def label_bar(width: int, left: str, right: str = "") -> np.ndarray:
    """A dark bar with ``left`` text and, right-aligned, ``right`` (e.g. the latency)."""
    cv2 = import_cv2()
    bar = np.full((HEADER, width, 3), 32, np.uint8)
    cv2.putText(bar, left, (6, HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    if right:
        (text_w, _), _ = cv2.getTextSize(right, cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, 1)
        cv2.putText(bar, right, (max(6, width - text_w - 6), HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX,
                    _FONT_SCALE, (120, 230, 120), 1, cv2.LINE_AA)
    return bar


def compose(panels: list[tuple[np.ndarray, str, str]]) -> np.ndarray:
    """Panels (image, label, stat) of equal height side by side, each under its label bar."""
    columns = [np.concatenate([label_bar(image.shape[1], label, stat), image], axis=0) for image, label, stat in panels]
    return np.ascontiguousarray(np.concatenate(columns, axis=1))


def panel_box(index: int, widths: list[int], height: int) -> tuple[slice, slice]:
    """Where panel ``index`` (without its label bar) sits in a composed frame: (rows, columns)."""
    left = sum(widths[:index])
    return slice(HEADER, HEADER + height), slice(left, left + widths[index])


class SmoothedRate:
    """Frames per second from the time between frames, exponentially smoothed so the number on
    screen is readable (alpha 0.1: about the last 10 frames)."""

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def update(self, seconds: float) -> float:
        rate = 1.0 / max(seconds, 1e-9)
        self.value = rate if self.value is None else (1 - self.alpha) * self.value + self.alpha * rate
        return self.value
