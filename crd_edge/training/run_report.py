"""What a finished (or interrupted) distillation run reports: ``summary.json``, ``report.md``
(rendered by ``run_dir.render_report`` from the summary alone) and the plots beside them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from crd_edge._io import write_json
from crd_edge.analysis.macs import count_macs
from crd_edge.analysis.roofline import matmul_gflops, precision_name
from crd_edge.config import StudentChoice
from crd_edge.models import create_model
from crd_edge.training.curves import NOT_LOSSES, plot_curve, plot_latency_choice, plot_losses
from crd_edge.training.run_dir import render_report
from crd_edge.training.run_setup import RunSetup
from crd_edge.training.views_run import ViewTraining

CACHE_NOTES = {
    "exact": "cached per view (image, crop, flip), computed on exactly what the student sees",
    "full": ("computed once per whole {load}x{load} image and mirror, then cropped: the teacher's whole-image "
             "output (what held-out scoring compares against), not its output on the crop alone "
             "(see crd_edge/training/teacher_cache.py)"),
}


@dataclass
class Throughput:
    """How much this session trained: images, seconds, and the FLOPs of one step."""
    images_seen: int
    train_seconds: float
    batch_images: int  # images in one step, over every rank
    step_flops: int | None  # FLOPs of one whole step (every network, fwd + bwd), None: not counted

    def compute_share(self, device, amp_dtype=None) -> dict | None:
        """How much of this machine the training used: the counted FLOPs of one step times the
        steps per second, against the matmul roofline measured now, in this process, in the
        precision the step's convolutions ran in (bf16 under CPU autocast, else fp32)."""
        if not self.step_flops or not self.train_seconds or device.type != "cpu":
            return None
        per_image = self.step_flops / max(1, self.batch_images)
        achieved = per_image * self.images_seen / self.train_seconds / 1e9
        roof = matmul_gflops(seconds=0.5, dtype=amp_dtype)
        return {"gflop_per_image": per_image / 1e9, "gflops": achieved, "matmul_gflops": roof["gflops"],
                "threads": roof["threads"], "share": achieved / roof["gflops"], "precision": roof["precision"]}


def run_summary(setup: RunSetup, throughput: Throughput, *, run_dir: Path, step: int, interrupted: bool,
                heldout: dict | None, scoring_seconds: float, last_metrics: dict) -> dict:
    """The run's summary (what ``summary.json`` holds and the report is rendered from)."""
    cfg, dc, views = setup.cfg, setup.cfg.data, setup.views
    spec = setup.student.crd_spec
    macs = count_macs(create_model(spec["name"], **spec["kwargs"]), (1, 3, 256, 256))
    data, cache_note = _data_summary(setup)
    not_terms = (*NOT_LOSSES, "loss")
    return {
        "run_dir": str(run_dir), "step": step, "total_steps": setup.total, "interrupted": interrupted,
        "teacher": setup.teacher.identity, "device": str(setup.device), "batch_size": dc.batch_size,
        "crop_size": dc.size, "test_size": dc.test_size, "world_size": setup.dist.world_size,
        "student": {"arch": cfg.student.arch, "kwargs": cfg.student.kwargs, "params": macs.params,
                    "true_gmacs": macs.true_macs / 1e9, "paper_gmacs": macs.paper_macs / 1e9,
                    "selection": cfg.student.selection or None, "init": setup.init_note,
                    "inherited": setup.inherited},
        "data": data,
        "train_seconds": throughput.train_seconds,
        "scoring_seconds": round(scoring_seconds, 1),
        "images_per_second": throughput.images_seen / max(throughput.train_seconds, 1e-9),
        "compute": throughput.compute_share(setup.device, setup.amp_dtype),
        "autocast": precision_name(setup.amp_dtype) if setup.amp else None,
        "loss_terms": sorted(k for k in last_metrics if k not in not_terms),
        "vgg": setup.vgg_info, "gan_note": setup.gan_note, "cache_note": cache_note,
        "heldout": heldout, "final_metrics": last_metrics,
    }


def _data_summary(setup: RunSetup) -> tuple[dict, str]:
    """The summary's ``data`` entry and where the teacher's outputs came from."""
    views, dc = setup.views, setup.cfg.data
    if views is not None:
        data = {"description": views.photos.description, "train_images": len(views.photos.train),
                "test_images": len(views.photos.test), "skipped": views.photos.skipped.as_dict(),
                "views": views.describe()}
        return data, views_note(views)
    data = {"description": setup.train_set.describe(), "train_images": len(setup.train_set),
            "test_images": 0 if setup.test_set is None else len(setup.test_set),
            "skipped": setup.train_set.skipped.as_dict()}
    cache_note = (CACHE_NOTES[setup.cfg.teacher.cache].format(load=dc.load_size)
                  + f"; {setup.cache.teacher_calls} teacher passes this session"
                  if setup.cache is not None else "teacher run on every batch (no cache)")
    return data, cache_note


def views_note(views: ViewTraining) -> str:
    info = views.describe()
    return (f"the teacher run on each view itself ({info['labeller'].get('runtime')}, {info['labeller'].get('precision')}); "
            f"{info['bank']['views']} labelled views in {info['bank']['folder']} "
            f"({info['bank']['loaded_from_disk']} reused from disk), {info['teacher_passes']} teacher passes "
            f"this session, {info['labelling_seconds']:.0f} s labelling")


def write_report(run_dir: Path, summary: dict, views: bool) -> None:
    """Plot the latency choice, the losses and (view-based runs: ``views``) the learning curve
    beside the run, name them in ``summary``, and write ``summary.json`` and ``report.md``."""
    if summary["student"]["selection"]:
        choice = StudentChoice.from_dict(summary["student"]["selection"])
        plot = plot_latency_choice(choice, run_dir / "latency_choice.png")
        summary["student"]["selection"] = dataclasses.replace(choice, plot=plot.name).as_dict()
    losses = plot_losses(run_dir / "metrics.jsonl", run_dir / "loss_curve.png",
                         f"{run_dir.name}: training losses (weighted)")
    summary["loss_curve"] = losses.name if losses is not None else None
    if views:
        curve = plot_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png", run_dir.name)
        summary["learning_curve"] = curve.name if curve is not None else None
    write_json(run_dir / "summary.json", summary)
    (run_dir / "report.md").write_text(render_report(summary))
