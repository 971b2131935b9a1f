"""``crd-edge export``: checkpoint -> verified artifacts + manifest.json (DESIGN.md seam 2).

This release exports ONNX in fp32, fp16 and int8 (static QDQ, calibrated on the built-in
training photos). Every artifact is run through the runtime layer on real
photos and compared with the torch model; the figures and the status go into the manifest.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path

from crd_edge.errors import UserError

PLANNED_TARGETS = ("tflite", "coreml", "openvino", "tensorrt")
TARGETS = ("onnx",)
PRECISIONS = {"onnx": ("fp32", "fp16", "int8")}


def check_target(target: str, precision: str) -> None:
    if target in PLANNED_TARGETS:
        raise UserError(f"--target {target}: not in this release yet (available: {', '.join(TARGETS)})")
    if target not in TARGETS:
        close = difflib.get_close_matches(target, TARGETS + PLANNED_TARGETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"--target {target}: unknown target{hint}; available: {', '.join(TARGETS)}")
    if precision not in PRECISIONS[target]:
        raise UserError(f"--precision {precision}: {target} supports {', '.join(PRECISIONS[target])} in this release")


def export_checkpoint(checkpoint: str | Path, target: str = "onnx", precision: str = "fp32",
                      size: int | None = None, out_dir: str | Path | None = None, force: bool = False) -> list[dict]:
    """Export, verify and record; returns the manifest records written this time."""
    from crd_edge.export.manifest import ArtifactWriter
    from crd_edge.export.onnx import export_onnx
    from crd_edge.export.verify import verify_artifact
    from crd_edge.training.checkpoint import load_student
    from crd_edge.models.teachers import sha256_of

    check_target(target, precision)
    model, ckpt = load_student(checkpoint)
    size = size or ckpt["student"]["input_size"][0]
    if size < 8 or size % 4:
        raise UserError(f"--size {size}: must be a positive multiple of 4")
    out_dir = Path(out_dir) if out_dir else Path(checkpoint).parent / "export"
    writer = ArtifactWriter(out_dir, force=force)
    stem = "student" + (f"_{size}" if size != 256 else "") + (f"_{precision}" if precision != "fp32" else "")
    path = writer.reserve(f"{stem}.onnx")
    fp32_tmp = writer.reserve(f"{stem}.fp32.onnx")
    start = time.perf_counter()
    try:
        details = export_onnx(model, size, fp32_tmp if precision != "fp32" else path)
        if precision != "fp32":
            from crd_edge.export.onnx import convert_precision
            from crd_edge.export.verify import calibration_images
            details["precision"] = convert_precision(fp32_tmp, precision, path, calibration_images(size))
        seconds = time.perf_counter() - start
        verification = verify_artifact(path, model, size, precision)
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-written artifact behind
        raise
    finally:
        fp32_tmp.unlink(missing_ok=True)
    record = {"target": target, "precision": precision, "layout": "NCHW", "value_range": [-1.0, 1.0],
              "input": {"name": details["input_name"], "shape": [1, 3, size, size]},
              "output": {"name": details["output_name"], "shape": [1, 3, size, size]},
              "source_checkpoint": str(checkpoint), "source_sha256": sha256_of(checkpoint),
              "student": {"arch": ckpt["student"]["arch"], "kwargs": ckpt["student"]["kwargs"]},
              "tool_versions": details["tool_versions"], "rewrites": [], "export_seconds": round(seconds, 3),
              "conversion": details.get("precision"),
              "verification": verification}
    return [writer.commit(path, record)]
