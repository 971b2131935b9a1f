"""crd-edge: distil image-to-image GAN generators and ship them to edge devices.

The Python API is the CLI's own calls, importable from the top (loaded on first use, so
``import crd_edge`` stays light)::

    from crd_edge import load_config, distill, export_model, benchmark, evaluate, load

    run = distill(load_config(overrides=["train.steps=500"]))   # or load_config("my.yaml")
    results = list(export_model(run.checkpoint, ["onnx", "tflite"], ["fp32", "int8"]))
    rows = list(benchmark([str(run.run_dir / "export")]))
    model = load(str(run.run_dir / "export"))        # a Model
    styled = model("photo.jpg")                       # a PIL image; or a uint8 (H, W, 3) array,
    frame_out = model(frame, bgr=True)                # e.g. an OpenCV frame, at its own size

(``export`` and ``bench`` are the subpackages' names, hence ``export_model`` and ``benchmark``.)
"""

from __future__ import annotations

import importlib
from typing import Any

from typing import TYPE_CHECKING

from crd_edge._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each loads on first use
    from crd_edge.bench.run import bench as benchmark
    from crd_edge.config import load_config
    from crd_edge.eval.score import evaluate
    from crd_edge.export.run import export as export_model
    from crd_edge.pipeline import run_pipeline
    from crd_edge.runtime.model import open_model as load
    from crd_edge.training.loop import distill

# name -> (module, attribute): each is exactly what the matching command calls.
_API = {
    "load_config": ("crd_edge.config", "load_config"),        # crd-edge distill --config/--recipe/--set
    "distill": ("crd_edge.training.loop", "distill"),         # crd-edge distill
    "export_model": ("crd_edge.export.run", "export"),        # crd-edge export
    "benchmark": ("crd_edge.bench.run", "bench"),             # crd-edge bench
    "evaluate": ("crd_edge.eval.score", "evaluate"),          # crd-edge eval
    "load": ("crd_edge.runtime.model", "open_model"),         # what demo, eval and bench open models with
    "run_pipeline": ("crd_edge.pipeline", "run_pipeline"),    # crd-edge pipeline
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'crd_edge' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
