"""The models a demo runs, opened through :func:`crd_edge.runtime.model.open_model` (an artifact,
an export folder, a crd-edge checkpoint or a teacher), fixed to the size the frames are fitted to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError
from crd_edge.runtime.model import Model, local_runtimes

RUNTIMES = ("auto", *local_runtimes())


@dataclass
class DemoModel:
    """An opened model with a fixed input size and a label for its panel."""

    model: Model
    label: str
    size: tuple[int, int]   # (height, width) it is run at

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.run(x)


def open_demo_model(spec: str, runtime: str = "auto", size: tuple[int, int] | None = None,
               threads: int | None = None, size_option: str = "--size") -> DemoModel:
    """Open MODEL for the demo. ``size`` None: the model's own input size (256 for a teacher).
    ``size_option`` names where a required size came from, for the mismatch message."""
    from crd_edge.runtime.model import open_model as open_any

    model = open_any(spec, runtime=runtime, size=size, threads=threads)
    native = model.static_size
    if native is None:  # torch, or dynamic height/width: the model takes whatever size the frames are fitted to
        native = tuple(size) if size is not None else model.native_size or (256, 256)
    if size is not None and tuple(size) != tuple(native):
        path = model.identity["path"]
        raise UserError(f"{path}: takes {native[0]}x{native[1]} input, not {size[0]}x{size[1]} ({size_option}); "
                        f"export it again with --size {size[0]}x{size[1]}" + (" or drop --size" if size_option == "--size" else ""))
    from crd_edge.runtime.teachers import is_builtin_teacher  # torch: only once a model is opened
    name = spec if is_builtin_teacher(spec) else Path(spec).name
    label = f"{model.role} torch ({name})" if model.backend == "torch" else model.label
    return DemoModel(model, label, tuple(native))
