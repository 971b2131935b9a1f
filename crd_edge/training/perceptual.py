"""Perceptual distillation terms on VGG feature maps (style and feature losses).

CRD inherits these from OMGD (Ren et al., ICCV 2021), after Johnson et al., "Perceptual
Losses for Real-Time Style Transfer and Super-Resolution" (ECCV 2016). The VGG network lives
elsewhere; these functions take feature dicts mapping tap names (``"relu1_2"``,
``"relu2_2"``, ``"relu3_3"``, ``"relu4_3"``) to ``(N, C, H, W)`` tensors. Teacher features
carry no gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VGG_LAYERS",
    "gram_matrix",
    "style_loss",
    "feature_loss",
    "StyleLoss",
    "FeatureLoss",
]

#: The VGG16 taps CRD/OMGD use for the style term.
VGG_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _check_features(f: Tensor, name: str) -> None:
    if not isinstance(f, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(f).__name__}")
    if f.dim() != 4:
        raise ValueError(f"{name}: expected features of shape (N, C, H, W), "
                         f"got {f.dim()}-D shape {tuple(f.shape)}")
    if not f.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {f.dtype}")


def _pair(student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor],
          layer: str) -> tuple[Tensor, Tensor]:
    for side, feats in (("student", student_feats), ("teacher", teacher_feats)):
        if layer not in feats:
            raise ValueError(f"{side} features have no layer {layer!r}; "
                             f"available: {', '.join(sorted(feats)) or 'none'}")
    s, t = student_feats[layer], teacher_feats[layer]
    _check_features(s, f"student[{layer!r}]")
    _check_features(t, f"teacher[{layer!r}]")
    if s.shape != t.shape:
        raise ValueError(f"layer {layer!r}: student and teacher features must have the same "
                         f"shape, got {tuple(s.shape)} and {tuple(t.shape)}")
    return s, t.detach()


def gram_matrix(f: Tensor) -> Tensor:
    r"""Normalised Gram matrix of a feature map, ``(N, C, H, W) -> (N, C, C)``.

    .. math::
        G_{n,c,c'} = \frac{1}{C H W} \sum_{h,w} F_{n,c,h,w} F_{n,c',h,w}

    Computed in float32 (float64 stays float64), also under autocast: the sum over ``H*W``
    products overflows or loses the small entries in fp16.
    """
    _check_features(f, "f")
    n, c, h, w = f.shape
    dtype = torch.float64 if f.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=f.device.type, enabled=False):
        flat = f.to(dtype).reshape(n, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def style_loss(student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor],
               layers: Sequence[str] = VGG_LAYERS, weight: float = 1e4) -> Tensor:
    r"""Style loss: L1 between Gram matrices, summed over layers.

    .. math::
        \mathcal{L}_{style} = \sum_{l \in \text{layers}} w \cdot
        \operatorname{mean}\lvert G(F^s_l) - G(F^t_l) \rvert

    with :func:`gram_matrix` as ``G`` and ``w = 1e4`` per layer (CRD/OMGD recipe).
    """
    if not layers:
        raise ValueError("layers must name at least one feature layer")
    loss = None
    for layer in layers:
        s, t = _pair(student_feats, teacher_feats, layer)
        term = weight * F.l1_loss(gram_matrix(s), gram_matrix(t))
        loss = term if loss is None else loss + term
    return loss


def feature_loss(student_feats: Mapping[str, Tensor], teacher_feats: Mapping[str, Tensor],
                 layer: str = "relu2_2", weight: float = 10.0) -> Tensor:
    r"""Feature (content) loss: :math:`w \cdot \operatorname{mean}\lvert F^s_l - F^t_l \rvert`.

    CRD/OMGD use ``layer = relu2_2`` and ``w = 10``.
    """
    s, t = _pair(student_feats, teacher_feats, layer)
    return weight * F.l1_loss(s, t)


class StyleLoss(nn.Module):
    """Module form of :func:`style_loss`."""

    def __init__(self, layers: Sequence[str] = VGG_LAYERS, weight: float = 1e4) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.weight = weight

    def forward(self, student_feats: Mapping[str, Tensor],
                teacher_feats: Mapping[str, Tensor]) -> Tensor:
        return style_loss(student_feats, teacher_feats, self.layers, self.weight)

    def extra_repr(self) -> str:
        return f"layers={self.layers}, weight={self.weight}"


class FeatureLoss(nn.Module):
    """Module form of :func:`feature_loss`."""

    def __init__(self, layer: str = "relu2_2", weight: float = 10.0) -> None:
        super().__init__()
        self.layer = layer
        self.weight = weight

    def forward(self, student_feats: Mapping[str, Tensor],
                teacher_feats: Mapping[str, Tensor]) -> Tensor:
        return feature_loss(student_feats, teacher_feats, self.layer, self.weight)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, weight={self.weight}"
