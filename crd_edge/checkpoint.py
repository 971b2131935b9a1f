"""Self-describing checkpoints: one file rebuilds the student with no other input.

``load_student(path)`` is the only reader other commands use. Files are read with
``torch.load(weights_only=True)`` (a checkpoint may come from anyone), so they hold only
tensors and plain containers; writes go to a temporary file renamed into place, so a crash
or Ctrl-C mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from crd_edge.errors import UserError
from crd_edge.models.registry import create_model

FORMAT_VERSION = 1
PREPROCESSING = {"layout": "NCHW", "channels": "RGB", "dtype": "float32",
                 "value_range": [-1.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                 "note": "x = (rgb_uint8 / 255 - mean) / std; output: rgb_uint8 = round((y + 1) * 127.5)"}


def student_record(model: nn.Module, size: int) -> dict:
    """What rebuilds the student: registry name, constructor kwargs, weights, preprocessing."""
    spec = model.crd_spec
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"arch": spec["name"], "kwargs": dict(spec["kwargs"]), "state_dict": state,
            "input_size": [size, size], "preprocessing": PREPROCESSING}


def read_checkpoint(path: str | Path) -> dict:
    """Load a crd-edge checkpoint safely, with one-line errors for the usual mistakes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; `crd-edge distill` writes runs/<name>/checkpoint.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or "student" not in ckpt or "format_version" not in ckpt:
        raise UserError(f"{path}: not a crd-edge checkpoint (no 'student' record); "
                        "use --teacher for third-party weights")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this "
                        f"crd-edge reads ({FORMAT_VERSION}); upgrade crd-edge")
    return ckpt


def model_from_checkpoint(ckpt: dict, source: str | Path = "checkpoint") -> nn.Module:
    """Rebuild the student of an already-loaded checkpoint dict (eval mode); ``source`` names
    the file in errors."""
    record = ckpt["student"]
    try:
        model = create_model(record["arch"], **record["kwargs"])
        model.load_state_dict(record["state_dict"])
    except UserError:
        raise  # an architecture this crd-edge does not know: already one line
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()
        raise UserError(f"{source}: its weights do not fit the architecture it records ({record.get('arch')}, "
                        f"{record.get('kwargs')}: {detail[-1][:160] if detail else type(exc).__name__}); the "
                        "file was edited or assembled by hand: use the checkpoint distill wrote") from None
    return model.eval()


def load_student(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the distilled student from ``path`` alone; returns ``(model, checkpoint)``."""
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path), ckpt
