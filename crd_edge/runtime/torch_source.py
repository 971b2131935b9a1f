"""What ``crd-edge export`` can take: a crd-edge checkpoint (the distilled student) or a teacher
(TorchScript, a state dict, or "vintagify"), so that both are exported and compared the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crd_edge.errors import UserError


@dataclass
class ExportSource:
    model: nn.Module
    role: str                    # "student" or "teacher": the stem of the artifact names
    native_size: tuple[int, int] | None
    identity: dict[str, Any]     # path, sha256, architecture: recorded in the manifest
    checkpoint: dict | None = None  # the crd-edge checkpoint it was read from (students)


def is_crd_checkpoint(path: Path) -> bool:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(obj, dict) and "student" in obj and "format_version" in obj


def load_source(source: str | Path, arch: str | None = None, option: str = "") -> ExportSource:
    """The model behind ``source``, in eval mode, float32, with where it came from. ``option``
    names the argument that gave ``source`` in errors ("" for a positional MODEL)."""
    from crd_edge._io import file_sha256
    from crd_edge.checkpoint import load_student
    from crd_edge.runtime.teachers import VINTAGIFY, builtin_teacher, load_teacher

    text = str(source)
    path = Path(text)
    if path.is_dir() and (path / "checkpoint.pt").is_file():  # a run folder: runs/<name>
        path = path / "checkpoint.pt"
        text = str(path)
    builtin = builtin_teacher(text) == VINTAGIFY
    if not builtin and not path.is_file():
        raise UserError(f"{path}: no such checkpoint or model file; `crd-edge distill` writes "
                        "runs/<name>/checkpoint.pt (pass it or its run folder; or 'vintagify' for the built-in teacher)")
    if not builtin and path.suffix.lower() == ".onnx":
        raise UserError(f"{path}: already an ONNX file; export takes the torch model it came from "
                        "(a crd-edge checkpoint, TorchScript or state dict)")
    if not builtin and is_crd_checkpoint(path):
        model, ckpt = load_student(path)
        record = ckpt["student"]
        return ExportSource(model, "student", tuple(record["input_size"]),
                            {"path": str(path), "sha256": file_sha256(path), "kind": "crd-edge checkpoint",
                             "arch": record["arch"], "kwargs": record["kwargs"]}, checkpoint=ckpt)
    teacher = load_teacher(text, arch=arch, option=option)
    if teacher.module is None:
        raise UserError(f"{text}: no torch module to export")
    spec = getattr(teacher.module, "crd_spec", None) or {}
    return ExportSource(teacher.module.float().eval(), "teacher", None,
                        {"path": teacher.identity["path"], "sha256": teacher.identity["sha256"],
                         "kind": teacher.identity["kind"], "arch": spec.get("name"),
                         "kwargs": spec.get("kwargs")})
