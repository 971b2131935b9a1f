"""Held-out fidelity to the teacher and the sample grids written during training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crd_edge._io import save_png
from crd_edge.imaging import psnr_tensor, tensor_to_uint8


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
