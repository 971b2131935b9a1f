"""The models a demo runs: any exported artifact (through the runtime layer), an export folder,
a crd-edge checkpoint or a teacher, all behind one ``run(NCHW [-1, 1]) -> NCHW [-1, 1]``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.artifacts import FORMATS, find_artifacts, record_input_hw
from crd_edge.errors import UserError

# The runtimes that run on this machine's CPU, from the format table (Core ML needs macOS, a
# .trt.onnx graph needs TensorRT).
RUNTIMES = ("auto", *(f.runtime for f in FORMATS.values() if f.session and not f.not_local))
# For an export folder with runtime auto: the fastest fp32 runtime on a CPU in our benchmarks
# (OpenVINO 12.5 ms, onnxruntime 28 ms, LiteRT 35 ms for the student at 256x256 on 2 cores).
_AUTO_ORDER = ("openvino", "onnxruntime", "litert")


@dataclass
class DemoModel:
    """An opened model with a fixed input size and a label for its panel."""

    session: object
    label: str
    size: tuple[int, int]   # (height, width) it is run at

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(x)


class _TorchModuleSession:
    """A torch module (teacher or student) as a Session; fully convolutional, so any size runs."""

    backend = "torch"

    def __init__(self, module, path: str, size: tuple[int, int], threads: int | None) -> None:
        import torch
        if threads:
            torch.set_num_threads(threads)
        self.module = module.float().eval()
        self.path = Path(path)
        self.input_shape = (1, 3, *size)

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _pick_from_folder(items: list, source: Path, runtime: str, size: tuple[int, int] | None):
    """The fp32 artifact of an export folder for ``runtime`` (auto: the fastest on a CPU)."""
    for wanted in (_AUTO_ORDER if runtime == "auto" else (runtime,)):
        for item in items:
            if (_runtime_of(item.target) == wanted and item.precision == "fp32"
                    and (size is None or record_input_hw(item.record) in (None, tuple(size)))):
                return item
    raise UserError(f"{source}: no fp32 artifact for --runtime {runtime}"
                    + (f" at --size {size[0]}x{size[1]}" if size else "")
                    + "; export one with `crd-edge export --target onnx` or pick another --runtime")


def _torch_model(spec: str, size: tuple[int, int] | None, threads: int | None) -> DemoModel:
    from crd_edge.runtime.torch_source import load_source
    source = load_source(spec)
    hw = size or source.native_size or (256, 256)
    name = Path(spec).name if spec != "vintagify" else "vintagify"
    return DemoModel(_TorchModuleSession(source.model, spec, hw, threads), f"{source.role} torch ({name})", hw)


def open_model(spec: str, runtime: str = "auto", size: tuple[int, int] | None = None,
               threads: int | None = None, size_option: str = "--size") -> DemoModel:
    """Open MODEL for the demo. ``size`` None: the artifact's own input size (256 for a teacher).
    ``size_option`` names where a required size came from, for the mismatch message."""
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime {runtime}: expected one of {', '.join(RUNTIMES)}")
    path = Path(spec)
    if spec != "vintagify" and not path.exists():
        raise UserError(f"{spec}: no such model: pass an exported artifact, an export folder, "
                        "a checkpoint (runs/<name>/checkpoint.pt) or 'vintagify'")
    if spec == "vintagify" or path.suffix.lower() in (".pt", ".pth"):
        if runtime not in ("auto", "torch"):
            raise UserError(f"{spec}: a torch model runs with --runtime torch; for --runtime {runtime} "
                            f"export it first: crd-edge export {spec} --target {_export_target(runtime)}")
        return _torch_model(spec, size, threads)
    items = find_artifacts(path)
    export_folder = path.name == "manifest.json" or (path.is_dir() and not path.suffix)  # (.openvino is a folder artifact)
    item = _pick_from_folder(items, path, runtime, size) if export_folder else items[0]
    path, artifact_runtime = item.path, _runtime_of(item.target)
    if artifact_runtime is None:
        raise UserError(f"{path}: the demo runs .onnx, .openvino, .xml, .tflite and torch checkpoints on this "
                        "machine (Core ML needs macOS, a .trt.onnx graph needs TensorRT)")
    if runtime not in ("auto", artifact_runtime):
        raise UserError(f"{path}: a {artifact_runtime} artifact cannot run with --runtime {runtime}; "
                        f"pass the {_export_target(runtime)} export instead")
    from crd_edge.runtime import open_session
    from crd_edge.runtime.base import input_hw
    session = open_session(path, threads=threads)
    native = input_hw(session.input_shape)
    if native is None:  # dynamic height/width: the model takes whatever size the frames are fitted to
        native = tuple(size) if size is not None else (256, 256)
    if size is not None and tuple(size) != tuple(native):
        raise UserError(f"{path}: takes {native[0]}x{native[1]} input, not {size[0]}x{size[1]} ({size_option}); "
                        f"export it again with --size {size[0]}x{size[1]}" + (" or drop --size" if size_option == "--size" else ""))
    role = item.role if item.role in ("student", "teacher") else path.stem
    precision = item.precision if item.record else ""
    return DemoModel(session, f"{role} {session.backend} {precision}".strip(), tuple(native))


def _runtime_of(target: str) -> str | None:
    """The runtime that opens ``target`` here, None where it cannot run on this machine."""
    fmt = FORMATS.get(target)
    return fmt.runtime if fmt and fmt.session and not fmt.not_local else None


def _export_target(runtime: str) -> str:
    """The --target whose artifacts ``runtime`` runs."""
    return next((t for t, f in FORMATS.items() if f.runtime == runtime and f.exporter), "onnx")
