"""Training views and the held-out split for teacher-labelled distillation.

A *view* is what the student sees in one step: a square crop of a photo (or a video frame) at a
random scale, maybe mirrored, maybe with its colours changed. The teacher is then run on the
view itself, so every view is a new input whose target depends on its own content only (a crop
of the teacher's whole-image output would depend on pixels the student never sees).

Held-out views are fixed: ``HELDOUT_PER_PHOTO`` crops of each held-out photo, the photo's short
side resized in turn to each of ``HELDOUT_SHORT_SIDES`` and the crop placed by a generator
seeded with the photo's name, so the split is the same on every machine and in every run.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

__all__ = ["ViewSpec", "sample_view", "heldout_views", "resize_short_side", "HELDOUT_PER_PHOTO",
           "HELDOUT_SHORT_SIDES", "is_heldout_name"]

HELDOUT_PER_PHOTO = 10
HELDOUT_SHORT_SIDES = (160, 256, 384)


@dataclass(frozen=True)
class ViewSpec:
    """How training views are drawn (all recorded with the run)."""

    size: int = 128          # the square view the student trains on
    min_short: int = 128     # the photo's short side is resized to a uniform draw in
    max_short: int = 400     # [min_short, max_short] (capped at the photo's own) before the crop
    flip: bool = True        # mirror half of the views
    jitter: float = 0.3      # probability of a photometric change (brightness, contrast, saturation)

    def as_dict(self) -> dict:
        return asdict(self)


def resize_short_side(image: np.ndarray, short: int, at_least: int) -> np.ndarray:
    """Resize uint8 HxWx3 so its short side is ``short`` (each side at least ``at_least``)."""
    h, w = image.shape[:2]
    scale = short / min(h, w)
    size = (max(at_least, round(w * scale)), max(at_least, round(h * scale)))
    if size == (w, h):
        return image
    # Lanczos anti-aliases when shrinking; bicubic when enlarging (a small photo at a large scale).
    method = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, method))


def _photometric(view: np.ndarray, rng: random.Random) -> np.ndarray:
    """Brightness (x0.8-1.2), offset (+-20 levels) and saturation (x0.7-1.3) about the grey."""
    gain, offset, saturation = rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(0.7, 1.3)
    img = view.astype(np.float32)
    grey = img.mean(2, keepdims=True)
    img = (grey + (img - grey) * saturation) * gain + offset
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def sample_view(image: np.ndarray, rng: random.Random, spec: ViewSpec) -> np.ndarray:
    """One random view (uint8 ``size x size x 3``) of a uint8 HxWx3 photo; only ``rng`` is used."""
    short_side = min(image.shape[:2])
    top = max(spec.min_short, min(spec.max_short, short_side))
    short = rng.uniform(spec.min_short, top) if top > spec.min_short else spec.min_short
    resized = resize_short_side(image, round(short), spec.size)
    y = rng.randrange(resized.shape[0] - spec.size + 1)
    x = rng.randrange(resized.shape[1] - spec.size + 1)
    view = resized[y:y + spec.size, x:x + spec.size]
    if spec.flip and rng.random() < 0.5:
        view = view[:, ::-1]
    if spec.jitter and rng.random() < spec.jitter:
        view = _photometric(view, rng)
    return np.ascontiguousarray(view)


def heldout_views(photos: Sequence[tuple[str, np.ndarray]], size: int = 128,
                  per_photo: int = HELDOUT_PER_PHOTO) -> tuple[np.ndarray, list[str]]:
    """The fixed held-out crops of ``(name, photo)`` pairs: ``N x size x size x 3`` uint8 and
    the photo name of each crop (see the module docstring for the rule)."""
    views, names = [], []
    for name, image in photos:
        rng = random.Random(zlib.crc32(name.encode()))
        for k in range(per_photo):
            short = min(HELDOUT_SHORT_SIDES[k % len(HELDOUT_SHORT_SIDES)], min(image.shape[:2]))
            resized = resize_short_side(image, max(short, size), size)
            y = rng.randrange(resized.shape[0] - size + 1)
            x = rng.randrange(resized.shape[1] - size + 1)
            views.append(np.ascontiguousarray(resized[y:y + size, x:x + size]))
            names.append(name)
    if not views:
        return np.zeros((0, size, size, 3), np.uint8), []
    return np.stack(views), names


def is_heldout_name(name: str, every: int = 8) -> bool:
    """The held-out rule for a user's folder without a test split: a file is held out when the
    CRC-32 of its name is divisible by ``every`` (about 1 in 8, stable across machines)."""
    return zlib.crc32(name.encode()) % every == 0
