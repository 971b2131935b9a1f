"""The demo's panels: labelled side-by-side frames and a smoothed frame rate. Fitting a frame to
the model and converting to and from its NCHW [-1, 1] convention live in :mod:`crd_edge.imaging`."""

from __future__ import annotations

import numpy as np

from crd_edge._deps import import_cv2

HEADER = 22          # pixels of label bar above each panel
_FONT_SCALE = 0.45


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
