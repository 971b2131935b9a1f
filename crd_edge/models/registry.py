"""Model registry and factory, timm style: ``create_model(name, **kwargs)`` is the one way in.

Each architecture module ends with tiny registered variants whose size is in the name
(``mobile_resnet_9blocks_ngf16``). Registering a name twice raises (torchvision's stricter
choice), so two modules can never silently shadow each other.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from crd_edge.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    kind: str  # "generator" | "discriminator"
    defaults: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    # What height and width must be multiples of: the product of the generator's strides (an int,
    # or a function of the merged kwargs for a depth set by an argument, as the U-Net's is).
    stride: int | Callable[[dict], int] = 1


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[..., nn.Module], *, kind: str = "generator",
                   doc: str = "", stride: int | Callable[[dict], int] = 1, **defaults: Any) -> None:
    """Register ``builder(**defaults, **kwargs)`` under ``name``; a duplicate name raises.
    ``stride``: what input height and width must be multiples of (see :func:`size_multiple`)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, builder, kind, dict(defaults), doc, stride)


# A generator whose architecture is not known here (TorchScript, ONNX): the CycleGAN/pix2pix ResNet
# layout's two stride-2 stages.
DEFAULT_MULTIPLE = 4


def size_multiple(name: str | None, kwargs: dict | None = None) -> int:
    """What a registered model's input height and width must be multiples of."""
    if not name or name not in _REGISTRY:
        return DEFAULT_MULTIPLE
    entry = _REGISTRY[name]
    return entry.stride({**entry.defaults, **(kwargs or {})}) if callable(entry.stride) else entry.stride


def check_size(name: str | None, kwargs: dict | None, height: int, width: int, option: str = "--size") -> None:
    """The one size rule: a one-line error naming ``option`` when (height, width) does not fit."""
    multiple = size_multiple(name, kwargs)
    if height % multiple or width % multiple or min(height, width) < max(multiple, 8):
        size = f"{height}" if height == width else f"{height}x{width}"
        raise UserError(f"{option} {size}: {name or 'the model'} needs a height and width that are multiples "
                        f"of {multiple} and at least {max(multiple, 8)} (e.g. {max(multiple, 8, -(-height // multiple) * multiple)})")


def list_models(kind: str | None = None) -> list[str]:
    """Registered names, sorted; ``kind`` filters generators or discriminators."""
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; an unknown name is a UserError suggesting the closest."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown model {name!r}{hint}; `crd-edge profile --list` lists them")
    return _REGISTRY[name]


def model_kwargs(name: str, **kwargs: Any) -> dict[str, Any]:
    """The full constructor kwargs of ``name`` with overrides; ``None`` values are dropped
    so callers can pass options through blindly (timm's convention)."""
    merged = dict(model_entry(name).defaults)
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    return merged


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model. Its resolved kwargs are stored on it as ``model.crd_spec``
    so a checkpoint can rebuild it from ``(name, kwargs)`` alone."""
    entry = model_entry(name)
    resolved = model_kwargs(name, **kwargs)
    try:
        model = entry.builder(**resolved)
    except TypeError as exc:  # an option this architecture does not take
        raise UserError(f"model {name!r}: {exc}; its options are {sorted(entry.defaults)} and the "
                        "builder's own keyword arguments") from None
    model.crd_spec = {"name": name, "kwargs": resolved}
    return model
