"""``crd-edge export``: a checkpoint or teacher -> verified artifacts + manifest.json
(docs/design.md).

For every (target, precision) the model is rewritten where the target needs it
(:mod:`crd_edge.export.rewrites`), converted by the target module, then run through the
runtime layer on held-out real photos and compared with the torch fp32 model; the figures and
the pass/fail status go into the manifest. Core ML cannot run on Linux: there its spec is
checked instead, and the record says numerics were not verified.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Iterator

from crd_edge.artifacts import EXPORT_TARGETS, FORMATS, STANDARD_PRECISIONS
from crd_edge.errors import UserError

TARGETS = EXPORT_TARGETS  # in the order of --target all: the fastest to convert first


def check_target(name: str) -> None:
    if name not in EXPORT_TARGETS:
        close = difflib.get_close_matches(name, [*EXPORT_TARGETS, "all"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"--target {name}: unknown target{hint}; choose from {', '.join(EXPORT_TARGETS)}, all")


def target_module(name: str) -> ModuleType:
    check_target(name)
    return importlib.import_module(f"crd_edge.export.{FORMATS[name].exporter}")


def parse_size(text: str | int | None, default: tuple[int, int] | None) -> tuple[int, int]:
    """``256`` or ``256x384`` (height x width), checked by the one size rule
    (:func:`crd_edge.models.registry.check_size`; the model's own stride is checked once it is loaded)."""
    if text is None:
        return default or (256, 256)
    match = re.fullmatch(r"(\d+)(?:[x,](\d+))?", str(text).strip().lower())
    if not match:
        raise UserError(f"--size {text}: expected N or HxW, e.g. 256 or 256x384")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    from crd_edge.models.registry import check_size
    check_size(None, None, height, width)
    return height, width


def plan(targets: list[str], precisions: list[str] | None) -> list[tuple[str, str]]:
    """(target, precision) pairs. ``all`` expands to every target; with no --precision a named
    target gets fp32 and ``all`` the standard precisions each target has. An explicit precision a named target lacks is an error."""
    names = list(TARGETS) if "all" in targets else list(dict.fromkeys(targets))
    pairs = []
    for name in names:
        check_target(name)
        supported = FORMATS[name].precisions
        default = STANDARD_PRECISIONS if "all" in targets else ("fp32",)
        wanted = precisions or [p for p in default if p in supported]
        for precision in wanted:
            if precision in supported:
                pairs.append((name, precision))
            elif "all" not in targets:
                raise UserError(f"--precision {precision}: {name} supports {', '.join(supported)}")
    if not pairs:
        raise UserError(f"--precision {', '.join(precisions or [])}: no target supports it")
    return pairs


def artifact_name(role: str, size: tuple[int, int], precision: str, suffix: str) -> str:
    height, width = size
    tag = "" if size == (256, 256) else f"_{height}" if height == width else f"_{height}x{width}"
    return f"{role}{tag}_{precision}{suffix}"


def export(source: str | Path, targets: list[str] | str = "onnx", precisions: list[str] | str | None = None,
           size: str | int | None = None, calib: str | Path | None = None, out_dir: str | Path | None = None,
           force: bool = False, arch: str | None = None) -> Iterator[dict]:
    """Export ``source`` (a crd-edge checkpoint, TorchScript, state dict or "vintagify") to each
    (target, precision), verify each artifact and record it. Yields one result per pair as it
    finishes: the manifest record, or ``{"target", "precision", "status": "skipped"|"error",
    "reason"}`` for a target whose backend is missing (with ``all``) or whose conversion failed."""
    import torch

    from crd_edge.export.base import MissingExtra
    from crd_edge.artifacts import ArtifactWriter
    from crd_edge.runtime.torch_source import load_source
    from crd_edge.export.verify import calibration_images, verification_images

    targets = [targets] if isinstance(targets, str) else list(targets)
    precisions = [precisions] if isinstance(precisions, str) else precisions
    pairs = plan(targets, precisions)
    src = load_source(source, arch)
    height, width = parse_size(size, src.native_size)
    from crd_edge.models.registry import check_size
    check_size(src.identity.get("arch"), src.identity.get("kwargs"), height, width)
    out_dir = Path(out_dir) if out_dir else (Path(source).parent / "export" if src.role == "student" else Path("export"))
    writer = ArtifactWriter(out_dir, force=force)
    images = verification_images(height, width)
    with torch.no_grad():
        reference = src.model(images).float().numpy()
    calibration = (calibration_images(height, width, calib)
                   if any(p.startswith("int8") for _, p in pairs) else None)
    keep_going = "all" in targets or len(pairs) > 1

    for target, precision in pairs:
        module = target_module(target)
        try:
            yield _export_one(module, target, precision, src, (height, width), calibration, images,
                              reference, writer)
        except MissingExtra as exc:
            if not keep_going:
                raise
            yield {"target": target, "precision": precision, "status": "skipped", "reason": str(exc)}
        except Exception as exc:  # a conversion that fails must not cost the other targets
            if not keep_going:
                raise
            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            yield {"target": target, "precision": precision, "status": "error", "reason": reason}


def _export_one(module, target, precision, src, size, calibration, images, reference, writer) -> dict:
    from crd_edge.export.base import ExportJob
    from crd_edge.artifacts import remove
    from crd_edge.export.rewrites import apply_rewrites
    from crd_edge.export.verify import verify_artifact

    height, width = size
    name = artifact_name(src.role, size, precision, FORMATS[target].suffix)
    model, rewrites = apply_rewrites(src.model, module.REWRITES)
    path = writer.reserve(name)
    try:
        with tempfile.TemporaryDirectory(prefix="crd-edge-export-") as work:
            job = ExportJob(model, height, width, precision, calibration, Path(work))
            start = time.perf_counter()
            details = module.export(job, path)
            seconds = time.perf_counter() - start
        verifier = FORMATS[target].verifier
        if verifier == "spec" and sys.platform != "darwin":
            verification = module.inspect(path, job)  # prediction runs only on macOS
        else:
            verification = verify_artifact(path, images, reference, precision)
            if verifier == "graph":
                verification["runtime"] = "onnxruntime, fp32 (the graph handed to TensorRT; engine numerics need TensorRT)"
    except BaseException:
        remove(path)  # never leave a half-written artifact behind
        raise
    nhwc = details["layout"] == "NHWC"
    shape = [1, height, width, 3] if nhwc else [1, 3, height, width]
    record = {"target": target, "precision": precision, "layout": details["layout"], "value_range": [-1.0, 1.0],
              "input": {"name": details["input_name"], "shape": shape},
              "output": {"name": details["output_name"], "shape": shape},
              "source": src.identity, "tool_versions": details["tool_versions"], "rewrites": rewrites,
              "export_seconds": round(seconds, 3), "conversion": details["conversion"],
              "verification": verification}
    return writer.commit(path, record)


def status_of(result: dict) -> str:
    return result.get("verification", {}).get("status", result.get("status", "?"))


def render_results(results: list[dict]) -> str:
    """The verification table: one row per artifact (Markdown, readable in a terminal)."""
    rows = ["| artifact | target | precision | size MB | export s | runtime | PSNR min dB | max abs err | status |",
            "|---|---|---|---:|---:|---|---:|---:|---|"]
    for r in results:
        if "verification" not in r:
            rows.append(f"| - | {r['target']} | {r['precision']} | | | | | | {r['status']}: {r['reason']} |")
            continue
        v = r["verification"]
        psnr = f"{v['psnr_db_min']:.1f} (>= {v['threshold_db']:.0f})" if "psnr_db_min" in v else "n/a"
        err = f"{v['max_abs_err']:.1e}" if "max_abs_err" in v else "n/a"
        note = f" ({v['numerics']})" if "numerics" in v else ""
        rows.append(f"| {r['path']} | {r['target']} | {r['precision']} | {r['bytes'] / 1e6:.2f} | "
                    f"{r['export_seconds']:.1f} | {v['runtime']} | {psnr} | {err} | {v['status']}{note} |")
    return "\n".join(rows)
