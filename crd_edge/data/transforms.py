"""The CycleGAN/pix2pix paper transforms with explicit, replayable randomness.

Training: resize to ``load_size`` x ``load_size`` (bicubic), random ``size`` crop, random
horizontal flip (CycleGAN's ``--preprocess resize_and_crop``). Test: resize straight to
``size``. The random part is split into ``sample_crop`` (draws ``CropParams`` from a given
``random.Random``) and ``apply_crop`` (pure), so a teacher output computed once on the full
resized image can later be cropped exactly like the student's input.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = [
    "CropParams",
    "NO_CROP",
    "apply_crop",
    "resize",
    "sample_crop",
]


@dataclass(frozen=True)
class CropParams:
    """Where to crop (top-left corner, in pixels of the resized image) and whether to flip."""

    top: int
    left: int
    flip: bool


#: The identity crop used in test mode (the image is already ``size`` x ``size``).
NO_CROP = CropParams(0, 0, False)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 HxWx3 to ``size`` x ``size`` with PIL bicubic, as CycleGAN does.

    The aspect ratio is not kept (neither does the paper's ``resize_and_crop``); PIL's
    resampling filters anti-alias when shrinking, so large photos do not alias.
    """
    if img.shape[0] == size and img.shape[1] == size:
        return np.array(img, dtype=np.uint8, copy=True)
    out = Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8).copy()


def sample_crop(
    load_size: int, size: int, rng: random.Random, flip: bool = True
) -> CropParams:
    """Draw a random crop of ``size`` inside ``load_size`` and a coin-flip horizontal flip.

    Only ``rng`` is used (never the global RNG), so the same seed gives the same crop in a
    resumed run or another process. ``flip=False`` disables flipping (``--no_flip``).
    """
    if size > load_size:
        raise ValueError(f"crop size {size} is larger than load_size {load_size}")
    top = rng.randint(0, load_size - size)
    left = rng.randint(0, load_size - size)
    # Always consume the draw so enabling/disabling flip does not shift later crops.
    coin = rng.random() < 0.5
    return CropParams(top=top, left=left, flip=bool(flip and coin))


def apply_crop(img: torch.Tensor, params: CropParams, size: int) -> torch.Tensor:
    """Crop ``size`` x ``size`` at ``params`` and flip horizontally if ``params.flip``.

    Works on any tensor shaped (..., C, H, W): an image, a batch, or a cached teacher output
    computed on the full resized image. Returns a new contiguous tensor.
    """
    h, w = img.shape[-2], img.shape[-1]
    if params.top < 0 or params.left < 0 or params.top + size > h or params.left + size > w:
        raise ValueError(
            f"crop {size}x{size} at (top={params.top}, left={params.left}) "
            f"does not fit a {h}x{w} image"
        )
    out = img[..., params.top : params.top + size, params.left : params.left + size]
    if params.flip:
        return out.flip(-1)  # flip copies
    # A copy, not a view, so a cached full-size tensor is not kept alive by its crops.
    return out.clone(memory_format=torch.contiguous_format)
