"""What :func:`crd_edge.eval.evaluate` returns: each figure with what it was measured against and
the network behind it, typed here and turned into JSON only at the edge (``--json``,
report.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Evaluation"]


@dataclass(frozen=True)
class Figure:
    """One figure (FID, KID, PSNR, SSIM or vgg_dist)."""

    value: float
    against: str = "teacher"                  # what the model's images were compared with
    network: dict[str, Any] | None = None     # Inception's or VGG-16's public identity; None for pixel figures
    input_baseline: float | None = None       # the same figure for copying the input (PSNR)
    details: dict[str, Any] = field(default_factory=dict)  # min, max, unit, std, subsets, images, method, cache

    def to_json(self) -> dict[str, Any]:
        out = {**self.details, "value": self.value, "against": self.against}
        if self.network is not None:
            out["network"] = self.network
        if self.input_baseline is not None:
            out["input_baseline"] = self.input_baseline
        return out


@dataclass(frozen=True)
class Evaluation:
    """A model scored on a set of images against a reference (its teacher, or real images)."""

    model: dict[str, Any]        # the scored model's identity: path, backend, sha256
    data: dict[str, Any]         # source, images, skipped
    reference: dict[str, Any]    # kind "teacher" (with its identity) or "images" (source, skipped)
    size: tuple[int, int]
    metrics: dict[str, Figure]
    per_image: list[dict[str, Any]]
    notes: list[str]

    def value(self, metric: str) -> float | None:
        figure = self.metrics.get(metric)
        return None if figure is None else figure.value

    @property
    def images(self) -> int:
        return self.data["images"]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "reference": self.reference, "size": list(self.size),
                "metrics": {name: figure.to_json() for name, figure in self.metrics.items()},
                "per_image": self.per_image, "notes": self.notes}
