"""Per-image fidelity to a reference image (the teacher's output), on uint8 images.

* PSNR in dB with peak 255: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
* SSIM: scikit-image's ``structural_similarity`` with ``channel_axis=-1`` and
  ``data_range=255`` (Gaussian-free 7x7 window, its defaults); identical images give 1.0.
* ``vgg_dist``: a VGG-16 feature distance in the style of LPIPS *without* its learned weights
  (no LPIPS weights are available offline, so it is not called LPIPS): at relu1_2, relu2_2,
  relu3_3 and relu4_3, features are unit-normalised along channels at every position, the
  squared L2 difference is summed over channels and averaged over positions, then the four
  layers are averaged. 0 for identical images; about 0.1-0.3 for visibly different ones.
  The VGG-16 weights used are resolved by :func:`crd_edge.models.vgg.load_vgg16` and named in
  every report.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["ssim_uint8", "VGGDistance"]


SSIM_SETTINGS = "Gaussian window sigma 1.5, population covariance, K1 0.01, K2 0.03, per channel then averaged"


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM between two uint8 HxWx3 images with the settings papers report (Wang et al. 2004:
    :data:`SSIM_SETTINGS`), not scikit-image's default 7x7 uniform window and sample covariance.
    The two differ little here (copying the input vs the vintagify teacher on 120 held-out crops:
    0.756 vs 0.758 by default; vs the style-transfer teacher 0.108 vs 0.119), but only this one
    compares with published SSIMs."""
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


class VGGDistance:
    """``vgg_dist`` between uint8 HxWx3 images (see the module docstring), with its weights'
    identity in :attr:`identity`."""

    NAME = ("vgg_dist: VGG-16 relu1_2/relu2_2/relu3_3/relu4_3, channel-unit-normalised features, "
            "squared L2 summed over channels, mean over positions and layers (LPIPS without learned weights)")

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        from crd_edge.models.vgg import load_vgg16

        self.net, resolved = load_vgg16(weights)
        self.identity: dict[str, Any] = {"network": "VGG-16 ImageNet", "file": resolved.file,
                                         "sha256": resolved.sha256[:12], "source": resolved.source,
                                         "variant": resolved.variant, "description": resolved.description}
        self._compiled: dict[tuple[int, int], Any] | None = None  # image size -> OpenVINO network


    def use_openvino(self) -> None:
        """Run VGG-16 in OpenVINO fp32 from now on where it is installed and gives torch's
        features (see ``measuring_network_on_openvino``), one compiled network per image size."""
        self._compiled = {}

    def _taps(self, x):
        """VGG-16's four taps for a float NCHW batch, in OpenVINO where :meth:`use_openvino` was
        called and it converts, else in torch."""
        import torch
        compiled = self._compiled
        if compiled is not None:
            size = tuple(x.shape[-2:])
            if size not in compiled:
                from crd_edge.runtime.openvino_session import measuring_network_on_openvino
                compiled[size] = measuring_network_on_openvino(self.net, x[:1])
            if compiled[size]:
                return [torch.from_numpy(tap) for tap in compiled[size](x)]
        with torch.no_grad():
            return list(self.net(x).values())

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        return float(self.each(a[None], b[None])[0])

    def each(self, a: np.ndarray, b: np.ndarray, batch: int = 4) -> np.ndarray:
        """The distance of each pair of uint8 N x H x W x 3 images ``a[i]``, ``b[i]``, ``batch``
        pairs a pass."""
        import torch

        from crd_edge.imaging import from_uint8

        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        out = []
        for i in range(0, len(a), batch):
            n = len(a[i:i + batch])
            x = torch.from_numpy(from_uint8(np.concatenate([a[i:i + batch], b[i:i + batch]])))
            per_layer = []
            for feature in self._taps(x):
                unit = feature / (feature.norm(dim=1, keepdim=True) + 1e-10)  # LPIPS' normalisation
                per_layer.append((unit[:n] - unit[n:]).pow(2).sum(1).mean((1, 2)))
            out.append(torch.stack(per_layer).mean(0).numpy())
        return np.concatenate(out) if out else np.zeros(0)
