"""``crd-edge ablate``: does CRD help? The same student, data, seed and step budget trained with
different objectives, each scored on held-out photos against the teacher.

Variants (the built-in job's config; only the loss weights change, each variant setting all of
them, so a variant means the same whatever the base config's weights are; pixel L1 and the
adversarial term keep the base config's weights, 100 and 1 by default):

* ``l1``             pixel L1 to the teacher output only
* ``l1+perceptual``  + VGG style and feature terms
* ``l1+gan``         + the adversarial term
* ``crd``            + CRD rows, columns and patches on top of ``l1+gan``: the default objective
* ``crd-rows-cols``  ``crd`` without the row and column relations
* ``crd-patches``    ``crd`` without the patch relations
* ``crd+perceptual`` ``crd`` plus the VGG terms
* ``paper``          the paper's student objective: CRD + perceptual + adversarial, no pixel L1

The VGG terms are in two variants only: their forward pass costs about three student steps, so
an ablation that carried them everywhere would take three times as long.

Every run is a normal ``crd-edge distill`` run under ``OUT/runs/<variant>-s<seed>``; a finished
run is reused, so an interrupted ablation continues where it stopped. A run on teacher-labelled
views (``data.views > 0``, the default) is scored on its own held-out views, the same for every
variant. On the dataset path the evaluation set is
cut from the held-out photos at their own scale (5 crops x 2 flips of each, ``eval_crop``
pixels), so FID has more than 3 images to work with; FID on a few dozen images is still
strongly biased (compare it only within this table).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from crd_edge._io import atomic_write_text, save_figure
from crd_edge._progress import optional_bar
from crd_edge.errors import UserError
from crd_edge.eval.result import Evaluation

# Every variant sets all five weights, so it means the same whatever the base config's are.
_PERCEPTUAL = {"loss.style": 0.01, "loss.feature": 0.02}   # the weights tuned for normalised VGG input
_CRD = {"loss.crd_rows": 25, "loss.crd_columns": 25, "loss.crd_patches": 25}
_NO_CRD = {"loss.crd_rows": 0, "loss.crd_columns": 0, "loss.crd_patches": 0}
_NO_PERCEPTUAL = {"loss.style": 0, "loss.feature": 0}
# The adversarial term keeps the base config's weight where a variant includes it (the
# teacher-D term of the dataset path only runs with real target-domain images; with data.views a
# discriminator learns the teacher's outputs, so it always can).
VARIANTS: dict[str, dict[str, float]] = {
    "l1": {**_NO_CRD, **_NO_PERCEPTUAL, "loss.gan": 0},
    "l1+perceptual": {**_NO_CRD, **_PERCEPTUAL, "loss.gan": 0},
    "l1+gan": {**_NO_CRD, **_NO_PERCEPTUAL},
    "crd": {**_CRD, **_NO_PERCEPTUAL},
    "crd-rows-cols": {**_CRD, "loss.crd_rows": 0, "loss.crd_columns": 0, **_NO_PERCEPTUAL},
    "crd-patches": {**_CRD, "loss.crd_patches": 0, **_NO_PERCEPTUAL},
    "crd+perceptual": {**_CRD, **_PERCEPTUAL},
    "paper": {**_CRD, **_PERCEPTUAL, "loss.pixel_l1": 0},
}
DEFAULT_VARIANTS = ("l1", "l1+perceptual", "l1+gan", "crd", "crd-rows-cols", "crd-patches")
METRICS = ("psnr", "ssim", "vgg_dist", "fid", "kid")


@dataclass(frozen=True)
class AblationResult:
    rows: list[dict]      # one per (variant, seed): the figures, as results.jsonl holds them
    markdown: str         # the table (mean ± spread over seeds)
    report: Path          # ablation.md
    plot: Path | None     # ablation.png


def make_eval_set(folder: Path, crop: int = 256) -> Path:
    """Held-out crops at native scale: 4 corners + centre, each also mirrored (10 per photo)."""
    from PIL import Image

    from crd_edge.data.builtin import builtin_split
    folder.mkdir(parents=True, exist_ok=True)
    for photo in builtin_split("test"):
        image = photo.image
        h, w = image.shape[:2]
        if min(h, w) < crop:
            raise UserError(f"--eval-crop {crop}: larger than held-out photo {photo.name} ({w}x{h})")
        corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), ((h - crop) // 2, (w - crop) // 2)]
        for i, (top, left) in enumerate(corners):
            view = image[top:top + crop, left:left + crop]
            for flip in (False, True):
                path = folder / f"{photo.name}_{i}{'_flip' if flip else ''}.png"
                if not path.exists():
                    Image.fromarray(np.ascontiguousarray(view[:, ::-1] if flip else view)).save(path)
    return folder


def _train(variant: str, seed: int, steps: int, runs: Path, config: Path | None, overrides: list[str],
           log: Callable[[str], None]) -> Path:
    from crd_edge.config import load_config
    from crd_edge.training.loop import distill
    name = f"{variant}-s{seed}"
    run_dir = runs / name
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("step") == steps:
        log(f"{name}: finished earlier, reused")
        return run_dir
    if (run_dir / "checkpoint.pt").is_file():
        log(f"{name}: resuming")
        # the config comes from the checkpoint; --steps still decides where the run ends
        result = distill(None, resume=run_dir, steps_override=steps, quiet=True)
    else:
        sets = [*overrides, *(f"{k}={v}" for k, v in VARIANTS[variant].items())]
        cfg = load_config(config, sets, base={"train.steps": steps, "train.seed": seed, "name": name,
                                              "runs_dir": str(runs)})
        log(f"{name}: training {steps} steps ({', '.join(sets) or 'the full objective'})")
        result = distill(cfg, quiet=True)
    if result.interrupted:
        raise KeyboardInterrupt
    return result.run_dir


def run_ablation(out: Path, variants: list[str] | None = None, seeds: list[int] | None = None, *, steps: int | None = None,
                 config: Path | None = None, overrides: list[str] | None = None, eval_crop: int = 256,
                 log: Callable[[str], None] = print, progress=None) -> AblationResult:
    """Train and score every (variant, seed); write ``results.jsonl``, ``ablation.md`` and a plot.
    ``progress(total, description)``: a context yielding ``advance(note=...)``, called once per
    run (the CLI's progress bar; default none)."""
    from crd_edge.eval import evaluate
    variants = list(variants or DEFAULT_VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variant {unknown[0]}: unknown; choose from {', '.join(VARIANTS)}")
    seeds = list(seeds or [0])
    out.mkdir(parents=True, exist_ok=True)
    from crd_edge.config import load_config
    first = [*(overrides or []), *(f"{k}={v}" for k, v in VARIANTS[variants[0]].items())]
    base = load_config(config, first)
    views = base.data.views > 0
    steps = steps or base.train.steps
    # A view-based run scores itself on its held-out views (the same split for every variant);
    # the dataset path is scored here on crops of the held-out photos.
    eval_dir = None if views else make_eval_set(out / f"eval_images_{eval_crop}", eval_crop)
    rows = []
    # One step per run, on a terminal (a run takes minutes to an hour: the ETA is what one waits on).
    bar = optional_bar(progress, len(seeds) * len(variants), "ablate")
    with bar as advance:
        for seed in seeds:
            for variant in variants:
                run_dir = _train(variant, seed, steps, out / "runs", config, list(overrides or []), log)
                summary = json.loads((run_dir / "summary.json").read_text())
                if views:
                    rows.append(_views_row(variant, seed, steps, run_dir, summary))
                    log(f"{variant}-s{seed}: " + ", ".join(f"{m} {rows[-1][m]:.4g}" for m in METRICS
                                                           if rows[-1][m] is not None))
                    _write_jsonl(out / "results.jsonl", rows)
                    advance(note=f"{variant}-s{seed} scored")
                    continue
                scores = evaluate(run_dir / "checkpoint.pt", data=eval_dir, reference="teacher", size=eval_crop,
                                  metrics=["fid", "psnr", "ssim", "vgg"], cache_dir=out / "fid_cache")
                row = {"variant": variant, "seed": seed, "steps": steps, "run_dir": str(run_dir),
                       "train_seconds": summary.get("train_seconds"),
                       "heldout_psnr_whole": summary["heldout"]["psnr_student_teacher"],
                       "heldout_copy_psnr_whole": summary["heldout"]["psnr_input_teacher"],
                       "images": scores.images, "copy_psnr": scores.metrics["psnr"].input_baseline,
                       **{m: scores.value(m) for m in METRICS}, "networks": _networks(scores)}
                rows.append(row)
                log(f"{variant}-s{seed}: " + ", ".join(f"{m} {row[m]:.3f}" for m in METRICS if row[m] is not None))
                _write_jsonl(out / "results.jsonl", rows)
                advance(note=f"{variant}-s{seed} scored")
    table = render_table(rows)
    atomic_write_text(out / "ablation.md", table)
    plot = plot_ablation(rows, out / "ablation.png")
    return AblationResult(rows, table, out / "ablation.md", plot)


def _views_row(variant: str, seed: int, steps: int, run_dir: Path, summary: dict) -> dict:
    held = summary.get("heldout") or {}
    student, copy = held.get("student", {}), held.get("input", {})
    return {"variant": variant, "seed": seed, "steps": steps, "run_dir": str(run_dir),
            "train_seconds": summary.get("train_seconds"), "images": held.get("crops"),
            "heldout_psnr_whole": None, "heldout_copy_psnr_whole": None,
            "copy_psnr": copy.get("psnr"), "copy_kid": copy.get("kid"), "copy_vgg_dist": copy.get("vgg_dist"),
            **{m: student.get(m) for m in METRICS},
            "networks": {k: held[k] for k in ("inception", "vgg") if held.get(k)}}


def _networks(scores: Evaluation) -> dict:
    """metric -> "network (file, sha256)" as the evaluation reported it."""
    return {metric: f"{net.get('network')} ({Path(str(net.get('file'))).name}, sha256 {net.get('sha256')})"
            for metric, figure in scores.metrics.items() if (net := figure.network)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render_table(rows: list[dict]) -> str:
    """Mean ± standard deviation over seeds, one row per variant, in the order of VARIANTS."""
    variants = sorted({r["variant"] for r in rows}, key=list(VARIANTS).index)  # canonical order, not training order
    seeds = ", ".join(map(str, sorted({r["seed"] for r in rows})))
    steps = ", ".join(map(str, sorted({r["steps"] for r in rows})))
    first = rows[0]
    if first.get("heldout_psnr_whole") is None:  # runs on teacher-labelled views, scored on their own split
        intro = (f"{steps} steps per run; seeds {seeds}; scored on {first['images']} held-out views against the "
                 "teacher's outputs (KID, FID and VGG distance lower is better; PSNR and SSIM higher). Copying the "
                 f"input scores KID {_fmt(first.get('copy_kid'), 4)}, VGG distance "
                 f"{_fmt(first.get('copy_vgg_dist'), 3)}, PSNR {_fmt(first.get('copy_psnr'), 2)} dB.")
        columns = [("KID", "kid", 4), ("FID", "fid", 1), ("VGG distance", "vgg_dist", 3), ("PSNR (dB)", "psnr", 2),
                   ("SSIM", "ssim", 3)]
    else:
        intro = (f"Student and data as the built-in job; {steps} steps per run; seeds {seeds}; scored on "
                 f"{first['images']} held-out crops against the teacher's outputs (PSNR/SSIM higher is better; VGG "
                 "distance and FID lower is better). The whole-image column is the distill report's figure on the 3 "
                 f"held-out photos at 256x256; copying the input scores {first['heldout_copy_psnr_whole']:.2f} dB there"
                 + (f" and {first['copy_psnr']:.2f} dB on the crops." if first.get("copy_psnr") else "."))
        columns = [("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4), ("VGG distance", "vgg_dist", 3),
                   ("FID vs teacher", "fid", 2), ("PSNR whole photos (dB)", "heldout_psnr_whole", 2)]
    lines = [intro, "", "| variant | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        cells = [_mean_std([r[key] for r in mine if r.get(key) is not None], digits) for _, key, digits in columns]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    nets = first.get("networks", {})
    if nets:
        lines += ["", "Networks: " + "; ".join(f"{m}: {n}" for m, n in nets.items())]
    return "\n".join(lines) + "\n"


def _fmt(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plot_ablation(rows: list[dict], path: Path) -> Path:
    """PSNR, KID (FID for runs without it) and VGG distance per variant: one dot per seed, a mark
    at the mean, and a dashed line at copying the input where the rows carry it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    variants = sorted({r["variant"] for r in rows}, key=list(VARIANTS).index)  # canonical order, not training order
    panels = [("psnr", "PSNR vs teacher (dB, higher is better)"),
              ("kid", "KID vs teacher outputs (lower is better)") if rows[0].get("kid") is not None
              else ("fid", "FID vs teacher outputs (lower is better)")]
    if rows[0].get("vgg_dist") is not None:
        panels.append(("vgg_dist", "VGG distance to teacher (lower is better)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (metric, label) in zip(axes, panels):
        for i, variant in enumerate(variants):
            values = [r[metric] for r in rows if r["variant"] == variant and r[metric] is not None]
            if values:
                # a mark at the mean, not a bar: the axis is zoomed, and a bar's length would lie
                ax.hlines(statistics.mean(values), i - 0.3, i + 0.3, color="#08519c", linewidth=2)
                ax.scatter([i] * len(values), values, color="#08519c", zorder=3, s=14)
        copy = rows[0].get(f"copy_{metric}")
        if copy is not None:
            ax.axhline(copy, color="grey", linestyle="--", linewidth=1, label="copy the input")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(variants)), variants, rotation=20)
        ax.set_xlim(-0.6, len(variants) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(label, fontsize=10)
        values = [r[metric] for r in rows if r[metric] is not None] + ([copy] if copy is not None else [])
        spread = max(values) - min(values) or abs(max(values)) * 0.1 or 1.0
        # the differences between objectives are small against the values: zoom on them
        ax.set_ylim(min(values) - 0.6 * spread, max(values) + 0.4 * spread)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
