"""Image conventions in one place.

Models take and return NCHW RGB float32 in [-1, 1]; pictures are HWC uint8. Two paths convert
between them:

* exact (scoring, reports, labels): ``round((y + 1) * 127.5)`` clipped to [0, 255], rounding half
  to even in both numpy (float64) and torch, so 1 -> 255 and 0.999 -> 255 where truncation would
  give 254 (truncation biases PSNR and FID);
* fast (the demo and the benchmark harness, once per camera frame): the same rounding in float32
  on BGR frames, because the float64 path cost the demo 86 -> 71 FPS.

``fit_frame`` fits a camera frame to a model's input size; the demo and the benchmark harness
both call it, so a benchmark's pre- and post-processing time is the demo's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FITS = ("crop", "pad", "stretch")


# --- exact conversions ---------------------------------------------------------------------

def to_uint8(x: Any) -> np.ndarray:
    """Images in [-1, 1], ``(..., C, H, W)`` (numpy or torch) -> uint8 ``(..., H, W, C)``, exact."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)  # float64: (x + 1) * 127.5 exact enough to round right
    if x.ndim < 3:
        raise ValueError(f"expected (..., C, H, W) images, got shape {x.shape}")
    u8 = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(u8, -3, -1))


def from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in [-1, 1] (the models' input)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return np.ascontiguousarray(np.moveaxis(images.astype(np.float32) / 127.5 - 1.0, -1, -3))


def tensor_from_uint8(images: np.ndarray):
    """uint8 ``(..., H, W, 3)`` -> a float32 torch tensor ``(..., 3, H, W)`` in [-1, 1]."""
    import torch
    return torch.from_numpy(from_uint8(images))  # a new writable array (the photos may be read-only)


def tensor_to_uint8(x) -> np.ndarray:
    """A torch tensor ``(..., C, H, W)`` in [-1, 1] -> uint8 ``(..., H, W, C)``, rounded half to even
    like :func:`to_uint8` but in float32 on the tensor's device: a value that float32 puts exactly on
    .5 may land one level from the float64 result."""
    if x.ndim < 3:
        raise ValueError(f"expected a (..., C, H, W) tensor, got shape {tuple(x.shape)}")
    import torch
    u8 = ((x.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return u8.movedim(-3, -1).contiguous().cpu().numpy()


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two uint8 images (or batches) of the same shape; ``inf`` when identical."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def psnr_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each uint8 image of two ``(N, H, W, C)`` batches (an MSE floor keeps it finite)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


def psnr_tensor(a, b):
    """Per-image PSNR (dB) of two NCHW torch tensors in [-1, 1] (peak-to-peak range 2)."""
    import torch
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(torch.tensor(4.0) / mse)


# --- camera frames (the fast path) -----------------------------------------------------------

def fit_frame(frame: np.ndarray, size: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """``frame`` (H, W, 3) resized to ``size`` (height, width).

    crop: keep the aspect ratio and cut the centre (the default: no distortion, no borders);
    pad: keep the aspect ratio and letterbox with black; stretch: resize, distorting the aspect.
    """
    height, width = size
    h, w = frame.shape[:2]
    if fit == "stretch":
        return _resize(frame, width, height)
    if fit == "crop":
        scale = max(height / h, width / w)
        crop_h, crop_w = min(h, round(height / scale)), min(w, round(width / scale))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        return _resize(frame[top:top + crop_h, left:left + crop_w], width, height)
    if fit == "pad":
        scale = min(height / h, width / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        out = np.zeros((height, width, 3), np.uint8)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[top:top + new_h, left:left + new_w] = _resize(frame, new_w, new_h)
        return out
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return np.ascontiguousarray(image)
    try:
        import cv2
    except ImportError:  # a bare benchmark host: nearest neighbour (the demo itself needs OpenCV)
        rows = (np.arange(height) * image.shape[0] // height)[:, None]
        return np.ascontiguousarray(image[rows, np.arange(width) * image.shape[1] // width])
    shrinking = width < image.shape[1] or height < image.shape[0]
    # INTER_AREA averages when shrinking (no aliasing from a 1080p camera); linear when growing.
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_model_input(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR uint8 -> (1, 3, H, W) RGB float32 in [-1, 1] (the models' convention)."""
    rgb = bgr[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray((rgb / 127.5 - 1.0).transpose(2, 0, 1)[None])


def from_model_output(y: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) RGB in [-1, 1] -> (H, W, 3) BGR uint8, rounded (not truncated)."""
    rgb = np.clip((np.asarray(y[0], np.float32).transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)
    return np.ascontiguousarray(np.rint(rgb).astype(np.uint8)[:, :, ::-1])
