"""Teacher outputs computed once per source image instead of once per step.

On a CPU the teacher dominates offline distillation (about 1.6 s per 256x256 image for the
vintagify ResNet, versus 0.15 s (128 px) to 0.73 s (256 px) for a student step with VGG terms), and every epoch shows the teacher the
same source images again. Three modes (``teacher.cache``):

* ``exact``: outputs are cached per *view* (image, crop position, flip), computed on
  exactly what the student sees. Exact by construction; it pays off when views repeat, i.e.
  when ``load_size == size`` (no random crop: two views per image, the image and its mirror)
  or with ``data.augment_views``. With random crops there are ``2 (L - S + 1)^2`` views per
  image and almost none repeat, so the cache is skipped (``auto`` behaviour) rather than
  filling memory for nothing. Needed with ``data.color_jitter``.
* ``full`` (default): the teacher runs once on each whole resized image (and its mirror) and
  the crop is cut out of its output. The target is "the teacher's output on the whole image,
  cropped", not "on the crop alone", and for CycleGAN ResNets the two differ a lot: measured on
  the built-in photos with the vintagify teacher, 256 crops of 286 images gave 22-30 dB PSNR
  between the two (128 crops: 20-34 dB), because the teacher's receptive field and its
  InstanceNorm statistics span the whole image. That makes it the right target when the
  student is used (and scored) on whole images at ``load_size``, as in the built-in job
  (``load_size = test_size = 256``): there, exact per-crop targets scored about 3 dB worse on
  the held-out photos than these in a 3000-step test (and cost a teacher pass per view). It is an approximation of
  "the teacher on this crop" for anything else.
* ``off``: the teacher runs on every batch.
"""

from __future__ import annotations

from typing import Callable

import torch

from crd_edge.data.transforms import CropParams, apply_crop


class TeacherOutputCache:
    """Lazy cache of teacher outputs, filled the first time a view is drawn.

    Entries are stored in float16 on the CPU (half the memory; the rounding, ~5e-4 in [-1, 1],
    is far below any student's error). ``full_image=True`` is the ``full`` approximation above.
    """

    def __init__(self, teacher: Callable[[torch.Tensor], torch.Tensor],
                 load_full: Callable[[int], torch.Tensor], device: torch.device,
                 full_image: bool = False) -> None:
        self.teacher = teacher
        self.load_full = load_full
        self.device = device
        self.full_image = full_image
        self.entries: dict[tuple[int, int, int, bool, int], torch.Tensor] = {}
        self.teacher_calls = 0

    def _view(self, index: int, params: CropParams, size: int, view: int,
              student_input: torch.Tensor) -> torch.Tensor:
        if self.full_image:
            key = (index, -1, -1, params.flip, 0)
        else:
            key = (index, params.top, params.left, params.flip, view)
        if key not in self.entries:
            if self.full_image:
                image = self.load_full(index)
                image = image.flip(-1) if params.flip else image
                out = self.teacher(image[None].to(self.device))[0]
                # Stored in the un-flipped frame so crops are cut the same way as the input's.
                out = out.flip(-1) if params.flip else out
            else:  # exactly what the student sees (crop, flip and any colour jitter)
                out = self.teacher(student_input[None].to(self.device))[0]
            self.teacher_calls += 1
            self.entries[key] = out.to("cpu", torch.float16)
        entry = self.entries[key].float()
        return apply_crop(entry, params, size) if self.full_image else entry

    def targets(self, batch: dict, size: int, x: torch.Tensor | None = None, view: int = 0) -> torch.Tensor:
        """Teacher targets for a collated batch with ``index``, ``top``, ``left``, ``flip``;
        ``x`` is the student's input (default ``batch["A"]``), ``view`` the augmentation cycle
        position that, with the crop, identifies it."""
        x = batch["A"] if x is None else x
        views = [self._view(int(batch["index"][i]),
                            CropParams(int(batch["top"][i]), int(batch["left"][i]), bool(batch["flip"][i])),
                            size, view, x[i])
                 for i in range(len(batch["index"]))]
        return torch.stack(views).to(self.device)

    def state_dict(self) -> dict:
        return {":".join(str(int(v)) for v in key): value for key, value in self.entries.items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            index, top, left, flip, view = (int(v) for v in key.split(":"))
            self.entries[(index, top, left, bool(flip), view)] = value
