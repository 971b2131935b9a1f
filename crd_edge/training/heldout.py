"""The held-out split of a distillation run and how the student is scored on it: the one place
a run evaluates its student (``crd_edge.eval`` holds the metrics and the ``eval`` command).

Held-out views (``crd_edge.data.views.heldout_views``: fixed crops of photos that never enter
training) are labelled once by the teacher and kept beside the view bank. The student is scored
against the teacher's outputs on them, beside the same figures for copying the input:

* KID and FID between the set of student outputs and the set of teacher outputs (Inception-v3
  2015-12-05 pool3 features). KID is unbiased; FID on a few hundred crops is biased upwards
  (it is not comparable with FIDs computed on other set sizes) and is shown for reference.
  Whole-image KID does not separate a student from the input on 71 photos while crop KID does,
  hence crops.
* ``vgg_dist`` (VGG-16 features, LPIPS without learned weights), PSNR and SSIM per crop.

Also here: the quick PSNR on the held-out photos that the learning curve plots during training
(:func:`heldout_fidelity`) and the input | teacher | student grids (:func:`save_grid`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crd_edge._io import atomic_write_text, atomic_write_with, save_png
from crd_edge.data.views import heldout_views
from crd_edge.imaging import psnr_each, psnr_tensor, tensor_from_uint8, tensor_to_uint8

__all__ = ["HeldoutSet", "build_heldout", "student_outputs", "score_heldout", "quick_scores", "heldout_fidelity",
           "save_grid"]

log = logging.getLogger(__name__)


@dataclass
class HeldoutSet:
    inputs: np.ndarray          # N x S x S x 3 uint8
    targets: np.ndarray         # the teacher's outputs on them
    names: list[str]            # photo of each crop
    folder: Path                # where its labels and cached features live
    labeller: dict = field(default_factory=dict)

    @property
    def photos(self) -> int:
        return len(set(self.names))

    def __len__(self) -> int:
        return len(self.inputs)


def build_heldout(photos: list[tuple[str, np.ndarray]], size: int, labeller, folder: Path) -> HeldoutSet:
    """Crops of ``photos`` and the teacher's outputs on them (labelled once, cached in ``folder``)."""
    inputs, names = heldout_views(photos, size)
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "heldout.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if data["x"].shape == inputs.shape and np.array_equal(data["x"], inputs):
                    return HeldoutSet(inputs, data["y"], names, folder, getattr(labeller, "info", {}))
        except (OSError, ValueError, KeyError, EOFError):
            pass  # unreadable: label again
    targets = np.concatenate([labeller(inputs[i:i + 64]) for i in range(0, len(inputs), 64)]) if len(inputs) \
        else inputs.copy()
    # Two runs sharing the cache may label the same split at once: a unique temporary each.
    atomic_write_with(cache, lambda fh: np.savez(fh, x=inputs, y=targets))
    return HeldoutSet(inputs, targets, names, folder, getattr(labeller, "info", {}))


@torch.no_grad()
def student_outputs(student: torch.nn.Module, inputs: np.ndarray, device, batch: int = 32) -> np.ndarray:
    """The student's uint8 outputs on uint8 NHWC inputs (eval mode, rounded, not truncated)."""
    was = student.training
    student.eval()
    outs = []
    for i in range(0, len(inputs), batch):
        x = tensor_from_uint8(inputs[i:i + batch]).to(device)
        y = student(x).float().clamp(-1, 1)
        outs.append(tensor_to_uint8(y))
    student.train(was)
    return np.concatenate(outs) if outs else inputs.copy()


def quick_scores(outputs: np.ndarray, held: HeldoutSet) -> dict[str, float]:
    """PSNR of the student and of the input against the teacher (cheap: for learning curves)."""
    return {"psnr": float(psnr_each(outputs, held.targets).mean()),
            "psnr_input": float(psnr_each(held.inputs, held.targets).mean())}


def _input_vgg_dist(held: HeldoutSet, distance) -> float:
    """Copying the input's vgg_dist: the same for every student, so computed once per held-out
    set and VGG file and kept beside the labels (half the VGG passes of every later scoring)."""
    path = held.folder / f"vgg_dist_input_{distance.identity['sha256']}.json"
    try:
        stored = json.loads(path.read_text())
        if stored["crops"] == len(held):
            return float(stored["vgg_dist"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or torn: computed again
    value = float(distance.each(held.inputs, held.targets).mean())
    atomic_write_text(path, json.dumps({"vgg_dist": value, "crops": len(held)}))
    return value


def _features(held: HeldoutSet, name: str, images: np.ndarray, inception) -> np.ndarray:
    """Inception features, cached beside the held-out labels for the input and the teacher."""
    if name == "student":
        return inception(images)
    path = held.folder / f"inception_{name}_{inception.sha256[:12]}.npy"
    if path.is_file():
        feats = np.load(path, allow_pickle=False)
        if len(feats) == len(images):
            return feats
    feats = inception(images)
    atomic_write_with(path, lambda fh: np.save(fh, feats))
    return feats


def score_heldout(outputs: np.ndarray, held: HeldoutSet, *, inception: bool = True, vgg: bool = True,
                  ssim: bool = True) -> dict:
    """Every held-out figure for the student's uint8 ``outputs`` and for copying the input; a
    metric whose network is missing is left out with the reason in ``notes``."""
    from crd_edge.eval.fidelity import VGGDistance, ssim_uint8

    rows = {"student": outputs, "input": held.inputs}
    result: dict = {"crops": len(held), "photos": held.photos, "size": int(held.inputs.shape[1]),
                    "labeller": held.labeller, "notes": [], "student": {}, "input": {}}
    for who, images in rows.items():
        result[who]["psnr"] = float(psnr_each(images, held.targets).mean())
        if ssim:
            result[who]["ssim"] = float(np.mean([ssim_uint8(a, b) for a, b in zip(images, held.targets)]))
    if vgg:
        try:
            distance = VGGDistance()
            distance.use_openvino()  # 1.5x torch's speed on a CPU, the same figures
            result["student"]["vgg_dist"] = float(distance.each(outputs, held.targets).mean())
            result["input"]["vgg_dist"] = _input_vgg_dist(held, distance)
            result["vgg"] = distance.identity["description"]
        except Exception as exc:  # noqa: BLE001 - no VGG weights here: say so, keep the rest
            result["notes"].append(f"vgg_dist not computed: {str(exc).splitlines()[0]}")
    if inception and len(held) >= 2:
        try:
            from crd_edge.eval.fid import fid_from_features, kid
            from crd_edge.eval.inception import load_inception, public_identity

            net = load_inception()
            net.use_openvino()
            teacher = _features(held, "teacher", held.targets, net)
            for who, images in rows.items():
                feats = _features(held, who, images, net)
                k = kid(feats, teacher, subset_size=min(1000, len(held)))
                result[who].update(kid=k["mean"], kid_std=k["std"], fid=fid_from_features(feats, teacher))
            result["inception"] = public_identity(net.identity).get("network")
        except Exception as exc:  # noqa: BLE001 - no Inception network here: say so, keep the rest
            result["notes"].append(f"KID/FID not computed: {str(exc).splitlines()[0]}")
    for key in ("kid", "fid", "vgg_dist"):
        if key in result["student"] and result["input"].get(key):
            result[f"{key}_ratio"] = result["student"][key] / result["input"][key]
    if "psnr" in result["student"]:
        result["psnr_gain_db"] = result["student"]["psnr"] - result["input"]["psnr"]
    return result


TITLE_HEIGHT = 18  # pixels of the title bar above a grid's columns


def save_grid(path: str | Path, columns: list[torch.Tensor], titles: list[str] | None = None) -> None:
    """One row per image, one column per tensor (each NCHW [-1, 1]), e.g. input | teacher | student,
    under a bar with each column's title when ``titles`` are given."""
    rows = [np.concatenate([tensor_to_uint8(col[i]) for col in columns], axis=1)
            for i in range(columns[0].shape[0])]
    grid = np.concatenate(rows, axis=0)
    if titles:
        grid = np.concatenate([_title_bar([col.shape[-1] for col in columns], titles), grid], axis=0)
    save_png(grid, path)


def _title_bar(widths: list[int], titles: list[str]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont
    bar = Image.new("RGB", (sum(widths), TITLE_HEIGHT), (32, 32, 32))
    draw, font = ImageDraw.Draw(bar), ImageFont.load_default(size=12)
    for left, title in zip(np.cumsum([0, *widths[:-1]]), titles):
        draw.text((int(left) + 4, 2), title, fill=(255, 255, 255), font=font)
    return np.asarray(bar)


@torch.no_grad()
def heldout_fidelity(student: torch.nn.Module, inputs: torch.Tensor, teacher_out: torch.Tensor,
                     batch_size: int = 4) -> dict[str, float]:
    """Mean PSNR(student, teacher) and the copy-the-input baseline PSNR(input, teacher)."""
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    outs = [student(inputs[i:i + batch_size].to(device)).float().cpu()
            for i in range(0, len(inputs), batch_size)]
    student.train(was_training)
    student_out = torch.cat(outs)
    ps, pc = psnr_tensor(student_out, teacher_out), psnr_tensor(inputs, teacher_out)
    return {"psnr_student_teacher": float(ps.mean()), "psnr_input_teacher": float(pc.mean()),
            "psnr_gain_db": float((ps - pc).mean()), "images": len(inputs),
            "per_image_student": [round(float(v), 3) for v in ps]}
