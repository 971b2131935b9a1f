"""Teacher outputs computed once per source image instead of once per step.

On a CPU the teacher dominates offline distillation (about 1.6 s per 256x256 image for the
vintagify ResNet, versus about 0.1 s for a student step), and every epoch shows the teacher the
same source images again, only cropped and flipped differently. ``TeacherOutputCache`` runs the
teacher once on each *full* resized image (``load_size`` x ``load_size``, e.g. 286) and on its
mirror image, keeps the results, and cuts the training crop out of them.

The approximation, stated plainly: the cached target for a crop is "the teacher's output on the
whole image, cropped", not "the teacher's output on the crop alone". The two differ near the
crop borders (the teacher's receptive field sees beyond the crop; padding is applied at the
image border instead) and through InstanceNorm, whose statistics come from the whole image
rather than from the crop. Flips are exact: the mirrored image gets its own teacher pass.
``--set teacher.cache=off`` runs the teacher on every crop instead (exact, slow).
"""

from __future__ import annotations

from typing import Callable

import torch

from crd_edge.data.transforms import CropParams, apply_crop


class TeacherOutputCache:
    """Lazy per-(image, flip) cache of teacher outputs on full resized images.

    ``load_full(index)`` gives the resized source image (3 x L x L); entries are filled the
    first time an image/flip pair is drawn, and stored in float16 on the CPU (half the memory;
    the rounding, ~5e-4 in [-1, 1], is far below any student's error).
    """

    def __init__(self, teacher: Callable[[torch.Tensor], torch.Tensor],
                 load_full: Callable[[int], torch.Tensor], device: torch.device) -> None:
        self.teacher = teacher
        self.load_full = load_full
        self.device = device
        self.entries: dict[tuple[int, bool], torch.Tensor] = {}
        self.teacher_calls = 0

    def full_output(self, index: int, flip: bool) -> torch.Tensor:
        key = (int(index), bool(flip))
        if key not in self.entries:
            image = self.load_full(key[0])
            if key[1]:
                image = image.flip(-1)
            out = self.teacher(image[None].to(self.device))[0]
            self.teacher_calls += 1
            # Store the output in the un-flipped frame, so crops are cut the same way as the input.
            self.entries[key] = (out.flip(-1) if key[1] else out).to("cpu", torch.float16)
        return self.entries[key]

    def targets(self, batch: dict, size: int) -> torch.Tensor:
        """Teacher targets for a collated batch with ``index``, ``top``, ``left``, ``flip``."""
        crops = []
        for i in range(len(batch["index"])):
            params = CropParams(int(batch["top"][i]), int(batch["left"][i]), bool(batch["flip"][i]))
            full = self.full_output(int(batch["index"][i]), params.flip).float()
            crops.append(apply_crop(full, params, size))
        return torch.stack(crops).to(self.device)

    def state_dict(self) -> dict:
        return {f"{i}:{int(f)}": v for (i, f), v in self.entries.items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            index, flip = key.split(":")
            self.entries[(int(index), bool(int(flip)))] = value
