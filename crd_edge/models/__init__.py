"""Generators, discriminators and feature networks, behind a timm-style registry."""

from crd_edge.models import discriminator, resnet, unet  # noqa: F401  (registers the models)
from crd_edge.models.registry import create_model, list_models, model_entry, register_model

# The default student is the config's (crd_edge.config.ModelConfig.arch: pruned from the teacher).
LITE_STUDENT = "mobile_resnet_9blocks_ngf16_lite"  # the paper's student, norm-free and fusable
PAPER_STUDENT = "mobile_resnet_9blocks_ngf16"

__all__ = ["create_model", "list_models", "model_entry", "register_model",
           "LITE_STUDENT", "PAPER_STUDENT"]
