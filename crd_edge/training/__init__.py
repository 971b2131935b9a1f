"""CRD distillation: losses (pure functions + modules) and the training loop."""

from crd_edge.training.gan_losses import hinge_d_loss, hinge_g_loss, lsgan_loss
from crd_edge.training.losses import (CRDLoss, RKDLoss, columns_of, crd_loss, patches_of, rkd_angle_loss,
                                      rkd_distance_loss, rkd_loss, rows_of)
from crd_edge.training.perceptual import feature_loss, gram_matrix, style_loss

__all__ = ["crd_loss", "rkd_loss", "rkd_distance_loss", "rkd_angle_loss",
           "rows_of", "columns_of", "patches_of", "CRDLoss", "RKDLoss", "style_loss", "feature_loss",
           "gram_matrix", "lsgan_loss", "hinge_d_loss", "hinge_g_loss"]
