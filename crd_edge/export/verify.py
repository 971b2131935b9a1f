"""Verification of an exported artifact against its torch model on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# PSNR (dB) of the artifact's output against torch fp32, on real photos, per precision.
THRESHOLDS = {"fp32": 60.0, "fp16": 40.0, "int8": 30.0}


def threshold_for(precision: str) -> float:
    return THRESHOLDS[precision.split("-")[0]]  # int8-dynamic, int8-weight: the int8 bar


def _photos(data: str | Path | None, split: str, height: int, width: int, count: int) -> torch.Tensor:
    """``count`` photos as (N, 3, H, W) in [-1, 1]: resized to the longer side, centre-cropped."""
    from crd_edge.data import build_dataset
    side = max(height, width)
    layout = "folder" if data is not None else "auto"
    dataset = build_dataset(data, layout, split, size=side, load_size=side)
    images = torch.stack([dataset[i]["A"] for i in range(min(count, len(dataset)))])
    top, left = (side - height) // 2, (side - width) // 2
    return images[:, :, top:top + height, left:left + width].contiguous()


def verification_images(height: int, width: int | None = None, count: int = 3) -> torch.Tensor:
    """The held-out built-in photos (real images, never used for training or calibration)."""
    return _photos(None, "test", height, width or height, count)


def calibration_images(height: int, width: int | None = None, data: str | Path | None = None,
                       count: int = 16) -> torch.Tensor:
    """int8 calibration photos: ``data`` (``--calib DIR``) or the built-in training split."""
    return _photos(data, "test" if data is not None else "train", height, width or height, count)


def compare(outputs: np.ndarray, reference: np.ndarray, precision: str) -> dict:
    """Max-abs-error and per-image PSNR (peak-to-peak 2 for [-1, 1] images) against ``reference``."""
    mse = ((outputs - reference) ** 2).reshape(len(reference), -1).mean(1)
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-20))
    threshold = threshold_for(precision)
    return {"images": len(reference), "max_abs_err": float(np.abs(outputs - reference).max()),
            "psnr_db_min": float(psnr.min()), "psnr_db_mean": float(psnr.mean()),
            "threshold_db": threshold, "status": "passed" if psnr.min() >= threshold else "failed"}


def verify_artifact(path: Path, images: torch.Tensor, reference: np.ndarray, precision: str) -> dict:
    """Run ``path`` through the runtime layer image by image and compare with ``reference``
    (the torch fp32 model's outputs on ``images``)."""
    return verify_at_sizes(path, [(images, reference)], precision)


def verify_at_sizes(path: Path, checks: list[tuple[torch.Tensor, np.ndarray]], precision: str) -> dict:
    """:func:`verify_artifact` on each (images, reference) of ``checks``, in one session: one size
    for a fixed-size artifact, several for one with dynamic height and width, which passes only
    if it passes at every size; its figures are the worst size's, with each size's PSNR beside
    them."""
    from crd_edge.runtime import open_session
    session = open_session(path)  # once: a browser session starts Chromium
    try:
        results = [{"runtime": session.backend,
                    **compare(np.concatenate([session.run(img[None].numpy()) for img in images]), reference,
                              precision)} for images, reference in checks]
    finally:
        if hasattr(session, "close"):  # a browser session: its Chromium stops now
            session.close()
    if len(results) == 1:
        return results[0]
    worst = min(results, key=lambda r: r["psnr_db_min"])
    by_size = {"x".join(map(str, images.shape[2:])): round(r["psnr_db_min"], 2)
               for (images, _), r in zip(checks, results)}
    return {**worst, "max_abs_err": max(r["max_abs_err"] for r in results), "psnr_db_min_by_size": by_size,
            "status": "passed" if all(r["status"] == "passed" for r in results) else "failed"}
