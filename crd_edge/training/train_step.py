"""Benchmark of one distillation step: where a student step spends its time.

Times (median of ``repeats`` after a warm-up) the full step (student forward, every loss term,
backward, Adam) and, separately, its parts: the generator forward+backward, the three CRD terms
forward+backward, and the VGG perceptual terms forward+backward. The parts are measured alone,
so their shares of the full step are estimates (they need not add up to 100%).
"""

from __future__ import annotations

import statistics
import time

import torch

from crd_edge.config import LossConfig
from crd_edge.data.builtin import builtin_photos
from crd_edge.models import create_model
from crd_edge.imaging import tensor_from_uint8
from crd_edge.training.losses import crd_loss
from crd_edge.training.objective import VGG_LAYERS, student_losses
from crd_edge.training.perceptual import feature_loss, style_loss
from crd_edge.training.run_setup import mixed_precision


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, oneDNN kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _real_batch(batch_size: int, size: int) -> torch.Tensor:
    photos = builtin_photos()
    imgs = []
    for i in range(batch_size):
        img = tensor_from_uint8(photos[i % len(photos)].image)
        imgs.append(torch.nn.functional.interpolate(img[None], size=(size, size), mode="bilinear")[0])
    return torch.stack(imgs)


def benchmark_train_step(student_arch: str, size: int = 256, batch_size: int = 1, repeats: int = 5,
                         loss: LossConfig | None = None, amp: bool = True) -> dict:
    """Seconds per step and per part for ``student_arch`` at ``size`` (real photos, this CPU),
    under the autocast a run would use here (``amp``: bf16 on a CPU with AMX or AVX512-BF16)."""
    from crd_edge.models.vgg import load_vgg16
    dtype = mixed_precision(amp, torch.device("cpu"))
    cfg = loss or LossConfig()
    torch.manual_seed(0)
    student = create_model(student_arch)
    vgg, weights = load_vgg16(cfg.vgg_weights)
    opt = torch.optim.Adam(student.parameters(), lr=2e-4)
    x = _real_batch(batch_size, size)
    target = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # any image-like target times the same

    def forward():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            return student(x).float()

    def full_step():
        terms = student_losses(forward(), target, cfg, vgg=vgg)
        opt.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        opt.step()

    def generator_only():
        forward().abs().mean().backward()

    out = student(x).detach()

    def crd_only():
        leaf = out.clone().requires_grad_(True)
        sum(crd_loss(leaf, target, cfg.crd_rows, cfg.crd_columns, cfg.crd_patches, cfg.patch_size).values()).backward()

    def vgg_only():
        leaf = out.clone().requires_grad_(True)
        fs = vgg(leaf)
        with torch.no_grad():
            ft = vgg(target)
        (style_loss(fs, ft, layers=VGG_LAYERS, weight=cfg.style) + feature_loss(fs, ft, weight=cfg.feature)).backward()

    full = _median_seconds(full_step, repeats)
    parts = {name: _median_seconds(fn, repeats) for name, fn in
             (("generator_fwd_bwd", generator_only), ("crd_terms", crd_only), ("vgg_terms", vgg_only))}
    return {"student": student_arch, "size": size, "batch_size": batch_size, "threads": torch.get_num_threads(),
            "autocast": "bf16" if dtype is not None else None,
            "step_s": full, "images_per_s": batch_size / full, "parts_s": parts,
            "parts_share": {k: v / full for k, v in parts.items()}, "vgg_weights": weights.description}


def render_train_step(rows: list[dict]) -> str:
    lines = ["| batch | step (s) | images/s | generator | CRD terms | VGG terms |", "|---|---|---|---|---|---|"]
    for r in rows:
        p, s = r["parts_s"], r["parts_share"]
        lines.append(f"| {r['batch_size']} | {r['step_s']:.3f} | {r['images_per_s']:.2f} | "
                     f"{p['generator_fwd_bwd']:.3f} s ({s['generator_fwd_bwd']:.0%}) | "
                     f"{p['crd_terms']:.3f} s ({s['crd_terms']:.0%}) | {p['vgg_terms']:.3f} s ({s['vgg_terms']:.0%}) |")
    r = rows[0]
    lines.append(f"\n{r['student']} at {r['size']}x{r['size']}, {r['threads']} threads"
                 + (f", {r['autocast']} autocast" if r.get("autocast") else ", fp32") + ", median of timed steps; "
                 f"parts timed alone. VGG16: {r['vgg_weights']}")
    return "\n".join(lines)
