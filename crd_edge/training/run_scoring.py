"""How a distillation run looks at its student: the sample grids written during training
(input | teacher | student), the learning curve's points (view-based runs) and the held-out
scores at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from crd_edge.imaging import tensor_from_uint8
from crd_edge.training.heldout import quick_scores, save_grid, score_heldout, student_outputs
from crd_edge.training.views_run import ViewTraining


def heldout_inputs(test_set, limit: int) -> torch.Tensor | None:
    """The first ``limit`` inputs of the test set (``limit`` <= 0: all), None when there are none."""
    if test_set is None or len(test_set) == 0:
        return None
    n = len(test_set) if limit <= 0 else min(limit, len(test_set))
    return torch.stack([test_set[i]["A"] for i in range(n)])


@torch.no_grad()
def write_samples(path: Path, student: nn.Module, x: torch.Tensor, t: torch.Tensor, device) -> None:
    was = student.training
    student.eval()
    s = student(x.to(device)).float().cpu()
    student.train(was)
    save_grid(path, [x, t, s], ["input", "teacher", "student"])


def grid_views(views: ViewTraining, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out views spread over the split (training views when there are none)."""
    if views.heldout is not None and len(views.heldout):
        return spread(views.heldout.inputs, n), spread(views.heldout.targets, n)
    return views.fit_x[:n], views.fit_y[:n]


def spread(images: np.ndarray, n: int = 8) -> torch.Tensor:
    """``n`` of the uint8 NHWC ``images``, evenly spread, as NCHW in [-1, 1] (for grids)."""
    index = np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int)
    return tensor_from_uint8(images[index])


@torch.no_grad()
def curve_point(student: nn.Module, views: ViewTraining, device, full: bool = False) -> dict:
    """Held-out PSNR (every held-out figure when ``full``) and the L1 to the teacher on fixed
    training views (the training-set fit)."""
    was = student.training
    student.eval()
    fit = float((student(views.fit_x.to(device)).float().cpu() - views.fit_y).abs().mean())
    student.train(was)
    point = {"train_l1": fit, "train_l1_copy": float((views.fit_x - views.fit_y).abs().mean())}
    if views.heldout is not None:
        outputs = student_outputs(student, views.heldout.inputs, device)
        point.update({f"heldout_{k}": v for k, v in quick_scores(outputs, views.heldout).items()})
        if full:
            scores = score_heldout(outputs, views.heldout)
            point.update({f"heldout_{k}": scores["student"][k] for k in ("kid", "fid", "vgg_dist", "ssim")
                          if k in scores["student"]})
            point.update({f"heldout_{k}_input": scores["input"][k] for k in ("kid", "vgg_dist")
                          if k in scores["input"]})
    return point


def score_views(student: nn.Module, views: ViewTraining, device, run_dir: Path, full: bool = True) -> dict:
    """The held-out figures (``full``: every one; else PSNR and SSIM) and the held-out grid
    picture (input | teacher | student)."""
    held = views.heldout
    outputs = student_outputs(student, held.inputs, device)
    scores = score_heldout(outputs, held, inception=full, vgg=full)
    if not full:
        scores["notes"].append("KID, FID and vgg_dist not computed: train.eval=quick (a run under "
                               "1000 steps by default; --eval full scores them)")
    save_grid(run_dir / "heldout_grid.png", [spread(held.inputs), spread(held.targets), spread(outputs)],
              ["input", "teacher", "student"])
    scores["grid"] = "heldout_grid.png"
    return scores
