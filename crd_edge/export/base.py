"""What every target module shares: the job it is handed and the details it returns.

A target module (``crd_edge/export/<target>.py``; its suffix, precisions and pip extra are in
the format table, :data:`crd_edge.artifacts.FORMATS`) defines

* ``REWRITES``    names from ``crd_edge.export.rewrites`` applied to the model before it is
                  handed over (the orchestrator applies them and records them);
* ``export(job, path) -> ExportDetails``  writes the artifact to ``path`` (a temporary name that
  the manifest writer renames into place) and says what it wrote; the manifest record is made
  from it at the edge (``export.run``), the one place it becomes a dict.

Backends are imported inside ``export`` so that ``import crd_edge.export`` stays light;
a missing backend raises :func:`missing_extra`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crd_edge.errors import UserError


@dataclass
class ExportJob:
    """One artifact to write: a float32 NCHW model mapping [-1, 1] images to [-1, 1] images."""

    model: nn.Module                     # eval mode, rewrites already applied
    height: int
    width: int
    precision: str                       # one of the target's PRECISIONS
    calibration: torch.Tensor | None     # (N, 3, H, W) in [-1, 1]; given for int8 precisions
    work_dir: Path                       # scratch space for intermediate files (deleted after)
    contract: dict[str, str] = field(default_factory=dict)  # embedded in the file (artifacts.contract)
    dynamic: bool = False                # dynamic height and width; height x width is the example size

    def example(self) -> torch.Tensor:
        return torch.zeros(1, 3, self.height, self.width)


@dataclass
class ExportDetails:
    """What a target reports about the file it wrote (goes into manifest.json)."""

    input_name: str
    output_name: str
    layout: str = "NCHW"                       # layout of the artifact's input and output
    tool_versions: dict[str, str] = field(default_factory=dict)
    conversion: dict[str, Any] = field(default_factory=dict)   # method, quantizer settings, notes


class MissingExtra(UserError):
    """A target's backend is not installed (``--target all`` skips such targets)."""


def missing_extra(target: str, package: str) -> MissingExtra:
    """The error for ``target`` when ``package`` is missing, naming the extra from the format table."""
    from crd_edge.artifacts import FORMATS
    return MissingExtra(f"this target needs {package}: pip install 'crd-edge[{FORMATS[target].extra}]'")


def tool_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
