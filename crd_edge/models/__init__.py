"""Generators, discriminators and feature networks, behind a timm-style registry."""

from crd_edge.models import discriminator, resnet, unet  # noqa: F401  (registers the models)
from crd_edge.models.registry import create_model, list_models, model_entry, register_model

DEFAULT_STUDENT = "mobile_resnet_9blocks_ngf16_lite"
PAPER_STUDENT = "mobile_resnet_9blocks_ngf16"

__all__ = ["create_model", "list_models", "model_entry", "register_model",
           "DEFAULT_STUDENT", "PAPER_STUDENT"]
