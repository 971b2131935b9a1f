"""Verification of an exported artifact against its torch model on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

# PSNR (dB) of the artifact's output against torch fp32, on real photos, per precision.
THRESHOLDS = {"fp32": 60.0, "fp16": 40.0, "int8": 30.0}


def verification_images(size: int, count: int = 3) -> torch.Tensor:
    """The held-out built-in photos resized to ``size`` (real images, not noise)."""
    from crd_edge.data import build_dataset
    data = build_dataset(None, "builtin", "test", size=size, load_size=size)
    return torch.stack([data[i]["A"] for i in range(min(count, len(data)))])


def calibration_images(size: int, count: int = 8) -> torch.Tensor:
    """Training photos (never the held-out ones used for verification) for int8 calibration."""
    from crd_edge.data import build_dataset
    data = build_dataset(None, "builtin", "train", size=size, load_size=size)
    return torch.stack([data[i]["A"] for i in range(min(count, len(data)))])


def verify_artifact(path: Path, model: nn.Module, size: int, precision: str) -> dict:
    """Run ``path`` through the runtime layer and compare with ``model`` image by image."""
    from crd_edge.runtime import open_session
    session = open_session(path)
    images = verification_images(size)
    with torch.no_grad():
        reference = model.eval()(images).numpy()
    outputs = np.concatenate([session.run(img[None].numpy()) for img in images])
    mse = ((outputs - reference) ** 2).reshape(len(images), -1).mean(1)
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-20))  # peak-to-peak range 2 in [-1, 1]
    threshold = THRESHOLDS[precision]
    return {"images": len(images), "runtime": session.backend, "max_abs_err": float(np.abs(outputs - reference).max()),
            "psnr_db_min": float(psnr.min()), "psnr_db_mean": float(psnr.mean()), "threshold_db": threshold,
            "status": "passed" if psnr.min() >= threshold else "failed"}
