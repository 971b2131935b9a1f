"""The export loop: for every (target, precision) the model is rewritten where the target needs
it (:mod:`crd_edge.export.rewrites`), converted by the target module, then verified: by default
run through the runtime layer on held-out real photos and compared with the torch fp32 model; a
target module with its own ``verify(path, job, images, reference)`` decides instead (Core ML,
which cannot run on Linux, inspects its spec; TensorRT checks the graph it hands over). The
figures and the pass/fail status go into the manifest."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

from crd_edge.artifacts import FORMATS, record_input_hw
from crd_edge.artifacts.contract import DYNAMIC_DIMS
from crd_edge.errors import UserError
from crd_edge.export import artifact_name, dynamic_check_sizes, is_dynamic, parse_sizes, plan, target_module
from crd_edge.export.results import ExportResult
from crd_edge.export.strip import COMPARISON_NAME, write_comparison


def export(source: str | Path, targets: list[str] | str = "onnx", precisions: list[str] | str | None = None, *,
           size: str | int | None = None, calib: str | Path | None = None, out_dir: str | Path | None = None,
           force: bool = False, arch: str | None = None, keep_going: bool | None = None) -> Iterator[ExportResult]:
    """Export ``source`` (a crd-edge checkpoint, TorchScript, state dict or "vintagify") to each
    (target, precision), verify each artifact and record it. Yields one ``ExportResult`` per pair
    as it finishes: a written artifact with its manifest record, or a target skipped (its backend
    is missing, with several targets) or failed (its conversion raised). ``keep_going``: report
    a missing backend or a failed conversion as a result instead of raising (default: with
    several targets or precisions)."""
    from crd_edge.artifacts import ArtifactWriter
    from crd_edge.export.verify import calibration_images

    targets = [targets] if isinstance(targets, str) else list(targets)
    precisions = [precisions] if isinstance(precisions, str) else precisions
    pairs, dynamic = plan(targets, precisions), is_dynamic(size)
    fixed = _fixed_size_pairs(pairs) if dynamic else []
    src, sizes, out_dir = _load_checked(source, arch, None if dynamic else size, out_dir)
    writer = ArtifactWriter(out_dir, force=force)
    if keep_going is None:
        keep_going = "all" in targets or len(pairs) > 1 or len(sizes) > 1
    for target, precision in fixed:  # --size dynamic with several targets: these have fixed sizes only
        yield ExportResult(target, precision, "skipped", f"{target} has no dynamic height and width: export it "
                                                          "at stated sizes (--size 480x640,720x1280)")
    pairs = [pair for pair in pairs if pair not in fixed]

    done: list[ExportResult] = []
    first = None  # the first size's photos and reference: the comparison picture's
    for height, width in sizes:  # every artifact is verified at its own size, on the same photos
        # a dynamic artifact at its example size and two others, landscape and portrait
        checks = [_verification_set(src, h, w)
                  for h, w in (dynamic_check_sizes(height, width) if dynamic else [(height, width)])]
        first = first or checks[0]
        calibration = (calibration_images(height, width, calib)
                       if any(p.startswith("int8") for _, p in pairs) else None)
        yield from _export_pairs(pairs, src, (height, width, dynamic), calibration, checks, writer, out_dir,
                                 keep_going, done)
    _draw_comparison(out_dir / COMPARISON_NAME, first,
                     [r for r in done if record_input_hw(r.record) in (sizes[0], None)])


def _fixed_size_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs whose target cannot take dynamic sizes; a one-line error, before any work, when
    every target asked for is one."""
    fixed = [(t, p) for t, p in pairs if not FORMATS[t].dynamic_size]
    if fixed and len(fixed) == len(pairs):
        names = ", ".join(dict.fromkeys(t for t, _ in fixed))
        dynamic = ", ".join(t for t, f in FORMATS.items() if f.dynamic_size)
        raise UserError(f"--size dynamic: {names} exports fixed sizes only; name the sizes (--size "
                        f"480x640,720x1280) or export {dynamic}")
    return fixed


def _load_checked(source, arch: str | None, size, out_dir) -> tuple:
    """(the source model, the sizes to export at, the output folder), each checked before any
    conversion; a folder that cannot be written fails before the model is loaded."""
    from crd_edge.models.registry import check_size
    from crd_edge.runtime.torch_source import load_source

    if out_dir is not None:
        from crd_edge._io import writable_folder
        writable_folder(out_dir)  # before the model is loaded
    src = load_source(source, arch)
    sizes = parse_sizes(size, src.native_size)
    for height, width in sizes:
        check_size(src.identity.get("arch"), src.identity.get("kwargs"), height, width)
    default_out = Path(src.identity["path"]).parent / "export" if src.role == "student" else Path("export")
    return src, sizes, Path(out_dir) if out_dir else default_out


def _verification_set(src, height: int, width: int) -> tuple:
    """The held-out photos at this size and the torch fp32 model's outputs on them."""
    import torch

    from crd_edge.export.verify import verification_images

    images = verification_images(height, width)
    with torch.no_grad():
        reference = src.model(images).float().numpy()
    return images, reference


def _export_pairs(pairs, src, size, calibration, checks, writer, out_dir: Path, keep_going: bool,
                  done: list[ExportResult]) -> Iterator[ExportResult]:
    """Each (target, precision) at one size (height, width, dynamic), verified on each of
    ``checks`` (images, torch's outputs); the written ones are appended to ``done`` too. With
    ``keep_going`` a missing backend or a failed conversion is a result, not the end."""
    from crd_edge.export.base import MissingExtra

    for target, precision in pairs:
        module = target_module(target)
        try:
            record = _export_one(module, target, precision, src, size, calibration, checks, writer)
            done.append(ExportResult.written(record, out_dir))
            yield done[-1]
        except MissingExtra as exc:
            if not keep_going:
                raise
            yield ExportResult(target, precision, "skipped", str(exc))
        except Exception as exc:  # a conversion that fails must not cost the other targets
            if not keep_going:
                raise
            reason = (str(exc) if isinstance(exc, UserError)
                      else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            yield ExportResult(target, precision, "error", reason)


def _draw_comparison(picture: Path, first: tuple, written: list[ExportResult]) -> None:
    """One held-out photo through every artifact of the first size that runs here (comparison.png
    beside them): an illustration, so a failure to draw it is a warning, never a failed export."""
    images, reference = first
    try:
        if write_comparison(written, images[:1].numpy(), reference[:1], picture) is None:
            picture.unlink(missing_ok=True)  # not an older export's picture beside these artifacts
    except Exception as exc:  # noqa: BLE001
        picture.unlink(missing_ok=True)
        warnings.warn(f"{picture}: not drawn ({type(exc).__name__}: {str(exc)[:120]})", stacklevel=1)


def _export_one(module, target, precision, src, size, calibration, checks, writer) -> dict:
    from crd_edge.export.base import ExportJob
    from crd_edge.artifacts import remove
    from crd_edge.artifacts.contract import build_contract
    from crd_edge.export.isolate import export_in_child
    from crd_edge.export.rewrites import apply_rewrites
    from crd_edge.export.verify import verify_at_sizes

    height, width, dynamic = size
    name = artifact_name(src.role, (height, width), precision, FORMATS[target].suffix, dynamic)
    model, rewrites = apply_rewrites(src.model, module.REWRITES)
    path = writer.reserve(name)
    try:
        with tempfile.TemporaryDirectory(prefix="crd-edge-export-") as work:
            contract = build_contract(src.role, precision, height, width, src.identity.get("sha256"), dynamic)
            job = ExportJob(model, height, width, precision, calibration, Path(work), contract, dynamic)
            start = time.perf_counter()
            if FORMATS[target].isolated:
                details = export_in_child(module.__name__, job, path)
            else:
                details = module.export(job, path)
            seconds = time.perf_counter() - start
        if FORMATS[target].verifier == "session":  # run it and compare with torch, at each size
            verification = verify_at_sizes(path, checks, precision)
        else:  # the target module's own check (Core ML's spec, TensorRT's graph)
            verification = module.verify(path, job, *checks[0])
    except BaseException:
        remove(path)  # never leave a half-written artifact behind
        raise
    nhwc = details.layout == "NHWC"
    h, w = DYNAMIC_DIMS if dynamic else (height, width)
    shape = [1, h, w, 3] if nhwc else [1, 3, h, w]
    record = {"target": target, "precision": precision, "layout": details.layout, "value_range": [-1.0, 1.0],
              "input": {"name": details.input_name, "shape": shape},
              "output": {"name": details.output_name, "shape": shape},
              "source": src.identity, "tool_versions": details.tool_versions, "rewrites": rewrites,
              "export_seconds": round(seconds, 3), "conversion": details.conversion,
              "verification": verification}
    return writer.commit(path, record)


