"""The student's objective: CRD relations + VGG perceptual terms + GAN through the teacher's D.

Every term has its own weight in ``LossConfig``; a weight of 0 switches the term off (and
skips its computation), which is how ablations are run.
"""

from __future__ import annotations

import torch
from torch import nn

from crd_edge.config import LossConfig
from crd_edge.training.gan_losses import hinge_g_loss, lsgan_loss
from crd_edge.training.losses import crd_loss
from crd_edge.training.perceptual import feature_loss, style_loss

VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def needs_vgg(cfg: LossConfig) -> bool:
    return cfg.style > 0 or cfg.feature > 0


def student_losses(student_out: torch.Tensor, teacher_out: torch.Tensor, cfg: LossConfig, *,
                   vgg: nn.Module | None = None, discriminator: nn.Module | None = None,
                   condition: torch.Tensor | None = None, gan_mode: str = "lsgan") -> dict[str, torch.Tensor]:
    """Weighted loss terms of one student step (sum them for the total).

    ``condition`` is the input image for a conditional (pix2pix) discriminator.
    """
    terms: dict[str, torch.Tensor] = {}
    if cfg.crd_rows or cfg.crd_columns or cfg.crd_patches:
        terms.update(crd_loss(student_out, teacher_out, rows=cfg.crd_rows, columns=cfg.crd_columns,
                              patches=cfg.crd_patches, patch_size=cfg.patch_size,
                              distance_weight=cfg.rkd_distance, angle_weight=cfg.rkd_angle))
    if vgg is not None and needs_vgg(cfg):
        feats_s = vgg(student_out)
        with torch.no_grad():
            feats_t = vgg(teacher_out)
        if cfg.style:
            terms["style"] = style_loss(feats_s, feats_t, layers=VGG_LAYERS, weight=cfg.style)
        if cfg.feature:
            terms["feature"] = feature_loss(feats_s, feats_t, layer="relu2_2", weight=cfg.feature)
    if discriminator is not None and cfg.gan:
        fake = student_out if condition is None else torch.cat([condition, student_out], 1)
        # D is frozen here (requires_grad False): the student is pushed towards what the
        # teacher's discriminator calls real, without the student step changing D.
        pred = discriminator(fake)
        terms["gan"] = cfg.gan * (lsgan_loss(pred, True) if gan_mode == "lsgan" else hinge_g_loss(pred))
    if cfg.pixel_l1:
        terms["pixel_l1"] = cfg.pixel_l1 * (student_out - teacher_out).abs().mean()
    return terms
