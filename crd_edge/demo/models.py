"""The models a demo runs: any exported artifact (through the runtime layer), an export folder,
a crd-edge checkpoint or a teacher, all behind one ``run(NCHW [-1, 1]) -> NCHW [-1, 1]``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crd_edge.errors import UserError

RUNTIMES = ("auto", "onnxruntime", "openvino", "litert", "torch")
# Runtime -> the artifact suffixes it opens.
_SUFFIXES = {"onnxruntime": (".onnx",), "openvino": (".openvino", ".xml"), "litert": (".tflite",),
             "torch": (".pt", ".pth")}
# For an export folder with runtime auto: the fastest fp32 runtime on a CPU in our benchmarks
# (OpenVINO 12.5 ms, onnxruntime 28 ms, LiteRT 35 ms for the student at 256x256 on 2 cores).
_AUTO_ORDER = ("openvino", "onnxruntime", "litert")
_TARGET_RUNTIME = {"openvino": "openvino", "onnx": "onnxruntime", "tflite": "litert"}


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


def _runtime_of(path: Path) -> str | None:
    if path.name.endswith(".trt.onnx"):
        return None  # the TensorRT-ready graph: run it where TensorRT is
    for runtime, suffixes in _SUFFIXES.items():
        if path.suffix.lower() in suffixes:
            return runtime
    return None


def _pick_from_folder(folder: Path, runtime: str, size: tuple[int, int] | None) -> Path:
    """The fp32 artifact of an export folder for ``runtime`` (auto: the fastest on a CPU)."""
    manifest = folder / "manifest.json" if folder.is_dir() else folder
    if not manifest.is_file():
        raise UserError(f"{folder}: no manifest.json there; pass an artifact or checkpoint, or run `crd-edge export`")
    records = json.loads(manifest.read_text()).get("artifacts", [])
    order = _AUTO_ORDER if runtime == "auto" else (runtime,)
    for wanted in order:
        for r in records:
            path = manifest.parent / r["path"]
            if (_TARGET_RUNTIME.get(r.get("target")) == wanted and r.get("precision") == "fp32"
                    and path.exists() and (size is None or list(size) == r.get("input_size", list(size)))):
                return path
    raise UserError(f"{manifest}: no fp32 artifact for --runtime {runtime}"
                    + (f" at --size {size[0]}x{size[1]}" if size else "")
                    + "; export one with `crd-edge export --target onnx` or pick another --runtime")


def _torch_model(spec: str, size: tuple[int, int] | None, threads: int | None) -> DemoModel:
    from crd_edge.export.source import load_source
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
    if path.is_dir() and not path.suffix or path.name == "manifest.json":
        path = _pick_from_folder(path, runtime, size)
    artifact_runtime = _runtime_of(path)
    if artifact_runtime is None:
        raise UserError(f"{path}: the demo runs .onnx, .openvino, .xml, .tflite and torch checkpoints on this "
                        "machine (Core ML needs macOS, a .trt.onnx graph needs TensorRT)")
    if runtime not in ("auto", artifact_runtime):
        raise UserError(f"{path}: a {artifact_runtime} artifact cannot run with --runtime {runtime}; "
                        f"pass the {_export_target(runtime)} export instead")
    from crd_edge.runtime import open_session
    session = open_session(path, threads=threads)
    shape = tuple(int(d) for d in session.input_shape)
    native = shape[1:3] if shape[-1] == 3 and shape[1] != 3 else shape[2:4]
    if size is not None and tuple(size) != tuple(native):
        raise UserError(f"{path}: takes {native[0]}x{native[1]} input, not {size[0]}x{size[1]} ({size_option}); "
                        f"export it again with --size {size[0]}x{size[1]}" + (" or drop --size" if size_option == "--size" else ""))
    role = path.name.split("_")[0] if path.name.split("_")[0] in ("student", "teacher") else path.stem
    precision = _precision_of(path)
    return DemoModel(session, f"{role} {session.backend} {precision}".strip(), tuple(native))


def _precision_of(path: Path) -> str:
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        for r in json.loads(manifest.read_text()).get("artifacts", []):
            if r.get("path") == path.name:
                return r.get("precision", "")
    return ""


def _export_target(runtime: str) -> str:
    return {"onnxruntime": "onnx", "openvino": "openvino", "litert": "tflite"}.get(runtime, "onnx")
