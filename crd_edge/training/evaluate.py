"""Held-out fidelity to the teacher and the sample grids written during training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crd_edge._io import save_png
from crd_edge.imaging import psnr_tensor, tensor_to_uint8


def save_grid(path: str | Path, columns: list[torch.Tensor]) -> None:
    """One row per image, one column per tensor (each NCHW [-1, 1]), e.g. input | teacher | student."""
    rows = [np.concatenate([tensor_to_uint8(col[i]) for col in columns], axis=1)
            for i in range(columns[0].shape[0])]
    save_png(np.concatenate(rows, axis=0), path)


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
