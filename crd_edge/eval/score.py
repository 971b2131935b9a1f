"""Scoring a model: :func:`evaluate`, the library call behind ``crd-edge eval``.

MODEL is a crd-edge checkpoint (the student, run in torch), an exported artifact (run through
:func:`crd_edge.runtime.open_session`, so an int8 ``.tflite`` and its checkpoint are scored
the same way on the same pixels), or a teacher (``vintagify``, TorchScript, state dict).

The reference is either

* ``"teacher"``: the teacher's outputs on the same inputs. They are the target of PSNR, SSIM
  and ``vgg_dist`` and the reference set of FID/KID ("how far is the student from what it
  imitates"). The teacher is ``--teacher``, else the one the checkpoint records (for an
  artifact: the checkpoint named in its manifest), else vintagify (said in the notes); or
* a folder of real target-domain images: FID/KID only ("how real do the outputs look", the
  papers' protocol); pixel metrics need a teacher.

Each input image is fitted to the model's input (bicubic resize + centre crop, see
:func:`crd_edge.eval.images.fit_image`), run once through the model and at most once through
the teacher (outputs are consumed as they come: nothing is recomputed, and a big folder is never
held in memory), rounded to uint8, then scored. Reference Inception features are cached on
disk (:mod:`crd_edge.eval.cache`), so a second student is scored without re-running the teacher
when only FID/KID are asked for.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crd_edge._progress import optional_bar
from crd_edge.errors import UserError
from crd_edge.eval.result import Evaluation, Figure
from crd_edge.models.registry import check_size
from crd_edge.runtime.model import Model, check_model_exists, open_model

METRICS: tuple[str, ...] = ("fid", "kid", "psnr", "ssim", "vgg")
PIXEL_METRICS = frozenset({"psnr", "ssim", "vgg"})
FEATURE_METRICS = frozenset({"fid", "kid"})
ALIASES = {"vgg_dist": "vgg"}
UINT8_NOTE = "every image is rounded to uint8 (round((y + 1) * 127.5), not truncated) before scoring"

__all__ = ["evaluate", "parse_metrics", "render_table", "METRICS"]


# ---------------------------------------------------------------------------------------------
# Options


def parse_metrics(metrics: str | list[str] | None, reference_is_teacher: bool) -> tuple[list[str], list[str]]:
    """Validated metric names (in :data:`METRICS` order) and notes about how they were read.

    ``None`` means every metric the reference allows. ``lpips`` is refused with the reason rather
    than replaced: real LPIPS needs its learned layers and a torchvision backbone, neither of
    which crd-edge has."""
    notes: list[str] = []
    if metrics is None:
        names = list(METRICS) if reference_is_teacher else ["fid", "kid"]
    else:
        items = [metrics] if isinstance(metrics, str) else list(metrics)
        names = [m.strip().lower() for item in items for m in item.split(",") if m.strip()]
        if not names:
            raise UserError(f"--metrics: empty; choose from {','.join(METRICS)}")
    chosen: list[str] = []
    for name in names:
        if name == "lpips":
            raise UserError("--metrics lpips: not computed: LPIPS needs its learned layer weights and torchvision's "
                            "pretrained backbone, which crd-edge does not ship; --metrics vgg is the nearest "
                            "(LPIPS's VGG-16 features, unit-normalised, without the learned weights)")
        name = ALIASES.get(name, name)
        if name not in METRICS:
            close = difflib.get_close_matches(name, [*METRICS, *ALIASES, "lpips"], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"--metrics {name}: unknown metric{hint}; choose from {','.join(METRICS)}")
        if name not in chosen:
            chosen.append(name)
    pixel = [m for m in chosen if m in PIXEL_METRICS]
    if pixel and not reference_is_teacher:
        raise UserError(f"--metrics {','.join(pixel)}: pixel metrics compare with the teacher's output; "
                        "with --reference DIR only fid,kid can be computed (or use --reference teacher)")
    return [m for m in METRICS if m in chosen], notes


# ---------------------------------------------------------------------------------------------
# The model being scored


# ---------------------------------------------------------------------------------------------
# The teacher


def resolve_teacher(teacher: str | None, loaded: Model) -> tuple[Any, dict[str, Any], list[str]]:
    """The teacher to compare with: ``teacher`` if given, else the checkpoint's recorded one,
    else vintagify. Returns ``(Teacher, identity for the report, notes)``."""
    from crd_edge.runtime.teachers import VINTAGIFY, is_builtin_teacher, load_teacher

    notes: list[str] = []
    recorded = (loaded.checkpoint or {}).get("teacher")
    if teacher is not None:
        found, origin = load_teacher(teacher), "--teacher"
    elif recorded:
        if recorded.get("kind") == "online":
            raise UserError("the model's teacher was trained online and is not a file: pass --teacher FILE "
                            "(or --reference DIR for FID/KID against real images)")
        if is_builtin_teacher(str(recorded.get("source"))):  # a packaged teacher: reload it by name
            found = load_teacher(recorded["source"])
        else:
            file = Path(recorded.get("path") or recorded.get("source") or "")
            if not file.is_file():
                raise UserError(f"the model's recorded teacher {file} no longer exists: pass --teacher FILE")
            spec = recorded.get("arch")
            config = ((loaded.checkpoint or {}).get("config") or {}).get("teacher") or {}
            arch, kwargs = ((spec["name"], spec.get("kwargs") or {}) if isinstance(spec, dict)
                            else (config.get("arch"), config.get("kwargs") or {}))
            found = load_teacher(str(file), arch, kwargs)
        origin = "recorded in the checkpoint"
        if recorded.get("sha256") and recorded["sha256"] != found.identity["sha256"]:
            notes.append("the teacher file differs from the one the model was distilled from "
                         f"(sha256 {found.identity['sha256'][:12]}, recorded {recorded['sha256'][:12]})")
    else:
        found, origin = load_teacher(VINTAGIFY), "default"
        notes.append("the model records no teacher: compared with vintagify (pass --teacher to choose)")
    identity = {"source": found.identity.get("source"), "path": found.identity.get("path"),
                "sha256": str(found.identity.get("sha256"))[:12], "kind": found.identity.get("kind"),
                "origin": origin}
    return found, identity, notes


# ---------------------------------------------------------------------------------------------
# Evaluation


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate(model: str | Path, data: str | Path | None = "builtin", reference: str | Path = "teacher",
             metrics: str | list[str] | None = None, size: int | None = None, teacher: str | None = None,
             inception: str | os.PathLike[str] | None = None, vgg_weights: str | os.PathLike[str] | None = None,
             cache_dir: str | os.PathLike[str] | None = None, limit: int | None = None,
             fid_method: str = "auto", kid_subsets: int = 100, kid_subset_size: int = 1000,
             log: Callable[[str], None] | None = None, progress=None,
             out_dir: str | os.PathLike[str] | None = None) -> Evaluation:
    """Score ``model`` on ``data`` against ``reference``; every figure with the networks behind it.

    Args:
        model: checkpoint, exported artifact, or teacher source (see the module docstring).
        data: ``"builtin"`` (the held-out built-in photos), an image folder, or a CycleGAN
            folder (its ``testA``).
        reference: ``"teacher"`` or a folder of real target-domain images (a CycleGAN folder:
            ``trainB`` + ``testB``).
        metrics: subset of ``fid,kid,psnr,ssim,vgg`` (comma-separated or a list); default all
            the reference allows.
        size: evaluation size (square). Default: an artifact's static input, a checkpoint's
            recorded size, else 256. An artifact's static size cannot be overridden.
        teacher: teacher source overriding the recorded one.
        inception, vgg_weights: explicit network files (else resolved, see their modules).
        cache_dir: reference-statistics cache folder (default ``~/.cache/crd-edge/fid``).
        limit: score at most this many images (and reference images).
        fid_method: ``"auto"`` (exact low-rank route for fewer images than feature dimensions,
            else scipy ``sqrtm``), or force ``"sqrtm"``, ``"eigh"``, ``"lowrank"``
            (:func:`crd_edge.eval.fid.fid_against_stats`; all equal up to round-off).
        kid_subsets, kid_subset_size: KID subsets and their size (capped at the set sizes).
        log: called with one line per stage (progress for the CLI).
        progress: ``progress(total, description)`` -> a context yielding ``advance()``, called
            once per scored image (the CLI's progress bar; default none).
        out_dir: also write a report folder there: report.md (the table, per-image figures and
            the side-by-side picture), report.json and side_by_side.png.
    """
    say = log or (lambda line: None)
    is_teacher_ref = str(reference) == "teacher"
    wanted, notes = parse_metrics(metrics, is_teacher_ref)
    _check_arguments(model, size, out_dir)
    # 1. Everything that can fail on user input is resolved before the slow part starts.
    inputs = _resolve_inputs(model, data, reference, is_teacher_ref, wanted, size, teacher, inception, vgg_weights,
                             limit, notes)
    _check_memory(size, inputs.size, inputs.loaded, inputs.t_model, inputs.vgg)
    # 2. The reference's Inception statistics: cached, or gathered while scoring (a teacher).
    if inputs.net is not None:
        inputs.ref_stats, inputs.ref_info, inputs.ref_parts = _reference_statistics(
            inputs.net, inputs.size, inputs.source, inputs.ref_source, inputs.t_model, cache_dir, say)
    # 3. The model (and the teacher) on every image.
    rows, model_feats, teacher_feats, examples = _score_all(inputs, model, wanted, progress, say)
    # 4. The figures.
    figures = _pixel_figures(rows, inputs.vgg)
    if inputs.net is not None:
        figures.update(_fid_kid(inputs, model_feats, teacher_feats, wanted, cache_dir, fid_method, kid_subsets,
                                kid_subset_size, notes))
    result = _result_record(inputs, rows, figures, notes)
    if out_dir is not None:
        write_report_folder(Path(out_dir), result, examples)
    return result


@dataclass
class _Inputs:
    """What an evaluation scores, on what and against what, resolved before the first image."""
    source: Any                 # the images scored
    teacher_reference: bool     # compared with the teacher's outputs, not a folder of real images
    ref_source: Any             # a folder reference; None for the teacher's outputs
    net: Any                    # Inception, where FID or KID is asked for
    vgg: Any                    # the VGG distance, where asked for
    loaded: Model
    size: tuple[int, int]
    t_model: Any = None
    t_identity: dict[str, Any] | None = None
    ref_stats: dict | None = None  # the reference's Inception statistics; None until cached or gathered
    ref_info: Any = None
    ref_parts: dict | None = None


def _check_arguments(model, size: int | None, out_dir) -> None:
    """The checks that need nothing loaded, so a typo fails at once."""
    if size is not None:
        check_size(None, None, size, size)  # the generic rule first: before anything is loaded
    check_model_exists(model)
    if out_dir is not None:
        from crd_edge._io import writable_folder
        writable_folder(out_dir)


def _resolve_inputs(model, data, reference, is_teacher_ref: bool, wanted: list[str], size: int | None,
                    teacher: str | None, inception, vgg_weights, limit: int | None, notes: list[str]) -> _Inputs:
    """The images, the reference, the networks the metrics need, the model at its evaluation
    size and, for a teacher reference, the teacher; the teacher's notes go to ``notes``."""
    from crd_edge.eval.images import data_source, reference_source

    source = data_source(data, limit)
    ref_source = None if is_teacher_ref else reference_source(reference, limit)
    net = None
    if FEATURE_METRICS & set(wanted):
        from crd_edge.eval.inception import load_inception
        net = load_inception(inception)
    vgg = None
    if "vgg" in wanted:
        from crd_edge.eval.fidelity import VGGDistance
        vgg = VGGDistance(vgg_weights)
    loaded = open_model(str(model))
    height, width = _evaluation_size(loaded, size, model)
    inputs = _Inputs(source, is_teacher_ref, ref_source, net, vgg, loaded, (height, width))
    if is_teacher_ref:
        inputs.t_model, inputs.t_identity, t_notes = resolve_teacher(teacher, loaded)
        notes += t_notes
    return inputs


def _score_all(inputs: _Inputs, model, wanted: list[str], progress, say) -> tuple[list, list, list, list]:
    """:func:`_score_images` with the teacher run only where a figure needs it: a pixel metric,
    or a teacher reference whose statistics were not cached."""
    gather = inputs.net is not None and inputs.ref_stats is None
    run_teacher = inputs.t_model is not None and (bool(PIXEL_METRICS & set(wanted)) or gather)
    height, width = inputs.size
    say(f"scoring {inputs.source.count} images of {inputs.source.description} at {height}x{width}"
        + (" (model + teacher)" if run_teacher else ""))
    bar = optional_bar(progress, inputs.source.count, "eval")
    with bar as advance:
        return _score_images(inputs.loaded, model, inputs.source, inputs.size, wanted,
                             inputs.t_model if run_teacher else None, inputs.net, inputs.vgg,
                             teacher_features=gather, advance=advance)


def _fid_kid(inputs: _Inputs, model_feats: list[np.ndarray], teacher_feats: list[np.ndarray], wanted: list[str],
             cache_dir, fid_method: str, kid_subsets: int, kid_subset_size: int, notes: list[str]) -> dict[str, Any]:
    """FID/KID against the reference, caching a teacher reference's statistics gathered while scoring."""
    from crd_edge.eval import cache
    if len(model_feats) < 2:  # before anything is cached
        raise UserError(f"FID/KID need at least 2 images, {inputs.source.description} gave {len(model_feats)}")
    if inputs.ref_stats is None:  # a teacher reference, gathered in step 3
        inputs.ref_stats = cache.store(inputs.ref_parts, np.concatenate(teacher_feats), cache_dir)
    against = "teacher outputs" if inputs.teacher_reference else inputs.ref_source.description
    return _feature_figures(inputs.net, model_feats, inputs.ref_stats, inputs.ref_info, wanted, against, fid_method,
                            kid_subsets, kid_subset_size, notes)


def _result_record(inputs: _Inputs, rows: list[dict[str, Any]], figures: dict[str, Figure],
                   notes: list[str]) -> Evaluation:
    source, ref_source = inputs.source, inputs.ref_source
    return Evaluation(
        model=inputs.loaded.identity,
        data={"source": source.description, "images": len(rows), "skipped": dict(source.skipped)},
        reference=({"kind": "teacher", "teacher": inputs.t_identity} if inputs.teacher_reference else
                   {"kind": "images", "source": ref_source.description, "skipped": dict(ref_source.skipped)}),
        size=tuple(inputs.size), metrics=figures, per_image=rows, notes=[UINT8_NOTE, *notes])


#: Images kept for the side-by-side picture of a report folder.
EXAMPLES = 8


def write_report_folder(out_dir: Path, result: Evaluation, examples: list[list[np.ndarray]]) -> Path:
    """report.md (embedding side_by_side.png: input | model [| teacher] per row), report.json."""
    from crd_edge._io import atomic_write_text, save_png, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = "input | model | teacher" if examples and len(examples[0]) == 3 else "input | model"
    picture = save_png(np.concatenate([np.concatenate(row, axis=1) for row in examples], axis=0),
                       out_dir / "side_by_side.png")
    keys = [k for k in ("psnr", "psnr_input", "ssim", "vgg_dist") if k in result.per_image[0]]
    per_image = ["| image | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    per_image += [f"| {r['image']} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |" for r in result.per_image]
    markdown = ["# crd-edge eval", "", render_table(result), "",
                f"{len(examples)} of the images, {columns}:", "", f"![side by side]({picture.name})", ""]
    if keys:
        markdown += ["## Per image", "", *per_image, ""]
    atomic_write_text(out_dir / "report.md", "\n".join(markdown))
    write_json(out_dir / "report.json", json_safe(result.to_json()))
    return out_dir / "report.md"


MEMORY_MARGIN = 1.2  # kernels' workspaces and the allocator's rounding on top of the counted activations


def _check_memory(size: int | None, hw: tuple[int, int], loaded: Model, t_model, vgg) -> None:
    """Refuse, in one line and before any image is scored, a size whose activations need more
    memory than is free now (4096 px once allocated 9.7 GB, then died in a traceback). The
    networks run one after another on each image, so the largest peak is what must fit."""
    from crd_edge.analysis.memory import available_memory, peak_bytes_at
    available = available_memory()
    if available is None:
        return
    networks = {"the model": getattr(loaded.session, "module", None), "the teacher": getattr(t_model, "module", None)}
    peaks = {name: peak_bytes_at(module, *hw) for name, module in networks.items() if module is not None}
    if vgg is not None:
        peaks["vgg_dist"] = peak_bytes_at(vgg.net, *hw, batch=2)  # output and teacher side by side
    if not peaks:
        return
    name, need = max(peaks.items(), key=lambda item: item[1])
    if need * MEMORY_MARGIN > available:
        what = f"--size {size}" if size is not None else f"the evaluation size {hw[0]}x{hw[1]}"
        raise UserError(f"{what}: scoring at {hw[0]}x{hw[1]} needs about {need / 1e9:.1f} GB for {name}'s "
                        f"activations, more than the {available / 1e9:.1f} GB free: pass a smaller --size")


def _evaluation_size(loaded: Model, size: int | None, model) -> tuple[int, int]:
    """An artifact's static input; else ``size`` (checked against the model's stride); else the
    checkpoint's recorded size; else 256."""
    if loaded.static_size is not None:
        if size is not None and (size, size) != loaded.static_size:
            h, w = loaded.static_size
            raise UserError(f"--size {size}: {model} has a static {h}x{w} input; omit --size or pass {h}")
        return loaded.static_size
    if size is not None:
        check_size(loaded.identity.get("arch"), loaded.identity.get("kwargs"), size, size)  # the model's own stride
        return size, size
    return loaded.native_size or (256, 256)


def _reference_statistics(net, size: tuple[int, int], source, ref_source, t_model, cache_dir, say):
    """(stats or None, cache info, cache key parts). A teacher reference is only looked up (on a
    miss its features are gathered while scoring); a folder reference is computed on a miss."""
    from crd_edge.eval import cache
    from crd_edge.eval.images import fit_image
    from crd_edge.eval.inception import PREPROCESSING_VERSION

    height, width = size
    common = {"network_sha256": net.sha256, "preprocessing": PREPROCESSING_VERSION, "size": [height, width]}
    if ref_source is None:
        parts = {"kind": "teacher-outputs", "data": source.key, "teacher_sha256": t_model.identity["sha256"], **common}
        stats = cache.lookup(parts, cache_dir)
        return stats, {"hit": stats is not None, "file": str(cache.cache_file(parts, cache_dir)[0])}, parts
    parts = {"kind": "images", "data": ref_source.key, **common}

    def reference_features() -> np.ndarray:
        say(f"reference features: {ref_source.count} images of {ref_source.description}")
        feats = [net(fit_image(img, height, width)) for _, img in ref_source.iter_images()]
        if len(feats) < 2:
            raise UserError(f"--reference {ref_source.description}: fewer than 2 readable images")
        return np.concatenate(feats)

    stats, info = cache.cached_features(parts, reference_features, cache_dir)
    return stats, info, parts


def _score_images(loaded: Model, model, source, size: tuple[int, int], wanted: list[str], t_model, net, vgg,
                  teacher_features: bool, advance=lambda: None) -> tuple[list, list, list, list]:
    """Per-image rows (PSNR, SSIM, VGG distance against ``t_model`` when given), the Inception
    features of the model's outputs and, if ``teacher_features``, the teacher's, and the first
    ``EXAMPLES`` images as [input, output(, teacher)] uint8 triplets."""
    import torch

    from crd_edge.eval.fidelity import ssim_uint8
    from crd_edge.eval.images import fit_image
    from crd_edge.imaging import from_uint8, psnr_uint8, to_uint8

    rows: list[dict[str, Any]] = []
    model_feats: list[np.ndarray] = []
    teacher_feats: list[np.ndarray] = []
    examples: list[list[np.ndarray]] = []
    for name, image in source.iter_images():
        x_u8 = fit_image(image, *size)
        x = from_uint8(x_u8)[None]
        y = np.asarray(loaded.run(x))
        if y.shape != x.shape:
            raise UserError(f"{model}: output shape {tuple(y.shape)} differs from the input {tuple(x.shape)}; "
                            "not an image-to-image generator")
        if not np.isfinite(y).all():
            raise UserError(f"{model}: non-finite output (NaN/inf) on {name}; the model or artifact is broken")
        y_u8 = to_uint8(y)[0]
        row: dict[str, Any] = {"image": name}
        example = [x_u8, y_u8]
        if t_model is not None:
            t_u8 = to_uint8(t_model(torch.from_numpy(x)).cpu().numpy())[0]
            example.append(t_u8)
            if "psnr" in wanted:
                row["psnr"] = psnr_uint8(y_u8, t_u8)
                row["psnr_input"] = psnr_uint8(x_u8, t_u8)  # the copy-the-input baseline
            if "ssim" in wanted:
                row["ssim"] = ssim_uint8(y_u8, t_u8)
            if vgg is not None:
                row["vgg_dist"] = vgg(y_u8, t_u8)
            if net is not None and teacher_features:
                teacher_feats.append(net(t_u8))
        if net is not None:
            model_feats.append(net(y_u8))
        rows.append(row)
        if len(examples) < EXAMPLES:
            examples.append(example)
        advance()
    if not rows:
        raise UserError(f"no readable images in {source.description} ({source.skipped})")
    return rows, model_feats, teacher_feats, examples


def _pixel_figures(rows: list[dict[str, Any]], vgg) -> dict[str, Figure]:
    """Mean, min and max of the per-image PSNR, SSIM and VGG distance (those that were scored)."""
    figures: dict[str, Figure] = {}
    for key, unit in (("psnr", "dB"), ("ssim", ""), ("vgg_dist", "")):
        if key in rows[0]:
            values = [r[key] for r in rows]
            details = {"unit": unit, "min": float(np.min(values)), "max": float(np.max(values))}
            figures[key] = Figure(
                _mean(values), "teacher", network=vgg.identity if key == "vgg_dist" else None,
                input_baseline=_mean([r["psnr_input"] for r in rows]) if key == "psnr" else None,
                details={**details, "definition": vgg.NAME} if key == "vgg_dist" else details)
    return figures


def _feature_figures(net, model_feats: list[np.ndarray], ref_stats: dict, ref_info, wanted: list[str], against: str,
                     fid_method: str, kid_subsets: int, kid_subset_size: int, notes: list[str]) -> dict[str, Figure]:
    """FID and KID of the model's features against the reference statistics (appends caveats to ``notes``)."""
    from crd_edge.eval.fid import fid_against_stats, kid
    from crd_edge.eval.inception import FEATURE_DIM, public_identity

    n = len(model_feats)
    feats = np.concatenate(model_feats)
    n_ref = len(ref_stats["features"])
    identity = public_identity(net.identity)
    figures: dict[str, Figure] = {}
    if "fid" in wanted:
        value = fid_against_stats(feats, ref_stats["mu"], ref_stats["sigma"], method=fid_method)
        figures["fid"] = Figure(value, against, identity, details={"images": [n, n_ref], "method": fid_method,
                                                                   "reference_cache": ref_info})
        if min(n, n_ref) < FEATURE_DIM:
            notes.append(f"FID on {min(n, n_ref)} images (< {FEATURE_DIM}, the feature dimension) is strongly "
                         "biased upwards: compare only FIDs computed on the same number of images; KID is unbiased")
    if "kid" in wanted:
        result = kid(feats, ref_stats["features"], num_subsets=kid_subsets, subset_size=kid_subset_size)
        figures["kid"] = Figure(result["mean"], against, identity, details={
            "std": result["std"], "subsets": result["subsets"], "subset_size": result["subset_size"],
            "images": [n, n_ref], "reference_cache": ref_info})
        if result["std"] == 0 and kid_subsets > 1:
            notes.append("KID std is 0: the subsets are as large as the sets, so every subset is the same")
    return figures


# ---------------------------------------------------------------------------------------------
# Rendering


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def render_table(result: Evaluation) -> str:
    """A small Markdown table: figure | value | network / weights, then the notes."""
    m = result.metrics
    ref = result.reference
    against = (f"teacher {ref['teacher']['source']} (sha256 {ref['teacher']['sha256']})"
               if ref["kind"] == "teacher" else ref["source"])
    rows = ["| figure | value | network / weights |", "|---|---:|---|"]

    def net(identity: dict[str, Any]) -> str:
        return f"{identity['network']}: {Path(identity['file']).name} ({identity['source']}, sha256 {identity['sha256']})"

    if "fid" in m:
        f = m["fid"]
        images = f.details["images"]
        rows.append(f"| FID vs {f.against} ({images[0]} vs {images[1]} images) | {_fmt(f.value, 2)} | "
                    f"{net(f.network)} |")
    if "kid" in m:
        k = m["kid"]
        rows.append(f"| KID vs {k.against} ({k.details['subsets']} subsets of {k.details['subset_size']}) | "
                    f"{k.value:.4f} ± {k.details['std']:.4f} | {net(k.network)} |")
    if "psnr" in m:
        p = m["psnr"]
        rows.append(f"| PSNR vs teacher | {_fmt(p.value, 2)} dB | none (copy-the-input baseline "
                    f"{_fmt(p.input_baseline, 2)} dB) |")
    if "ssim" in m:
        rows.append(f"| SSIM vs teacher | {m['ssim'].value:.4f} | none (scikit-image, data_range 255) |")
    if "vgg_dist" in m:
        v = m["vgg_dist"].network
        rows.append(f"| vgg_dist vs teacher | {m['vgg_dist'].value:.4f} | VGG-16 {v['variant']} weights: "
                    f"{Path(v['file']).name} ({v['source']}, sha256 {v['sha256']}) |")
    model = result.model
    head = (f"model: {model['path']} [{model['backend']}, sha256 {model['sha256']}]  data: {result.data['source']} "
            f"({result.images} images, {result.size[0]}x{result.size[1]})  reference: {against}")
    lines = [head, "", *rows, ""]
    if result.data["skipped"]:
        lines.append(f"note: skipped unreadable images: {result.data['skipped']}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats (PSNR of identical images is inf) by strings: strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
