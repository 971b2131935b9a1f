"""Feature distillation from a white-box teacher (``loss.distill_features``): at chosen points of
the generator, a 1x1 convolution (an adapter, trained with the student and dropped at export)
maps the student's activations to the teacher's width, and the mean squared error to the
teacher's activations there is added to the objective, as GAN Compression and OMGD do.

Points, found in both generators' layer sequence (the ResNet generators of this package and
the CycleGAN teachers share it):

* ``encoder``: the end of the downsampling stem (before the first residual block);
* ``middle``: after the middle residual block;
* ``decoder``: the last activation before the output convolution.

The teacher runs only as far as the deepest point asked for: ``encoder`` costs about 6% of the
teacher's forward pass, ``decoder`` all of it (that is what bounds this on a CPU). A black-box
(ONNX) teacher has no activations to read: asking for this with one is an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crd_edge.errors import UserError

POINTS = ("encoder", "middle", "decoder")


def point_indices(module: nn.Module) -> dict[str, int]:
    """Index in ``module.model`` (a Sequential) of each point's output."""
    layers = getattr(module, "model", None)
    if not isinstance(layers, nn.Sequential):  # (a TorchScript teacher's is a ScriptModule: opaque here)
        raise UserError("loss.distill_features needs a ResNet generator (a .model layer sequence) "
                        f"on both sides; {type(module).__name__} has none")
    blocks = [i for i, layer in enumerate(layers) if type(layer).__name__ == "ResidualBlock"]
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
    if not blocks or not convs:
        raise UserError(f"loss.distill_features: {type(module).__name__} has no residual blocks to align")
    last_activation = max((i for i in range(convs[-1]) if isinstance(layers[i], (nn.ReLU, nn.LeakyReLU))),
                          default=convs[-1] - 1)  # the teacher pads between it and the output conv
    return {"encoder": blocks[0] - 1, "middle": blocks[len(blocks) // 2], "decoder": last_activation}


def parse_points(text: str) -> list[str]:
    points = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in points if p not in POINTS]
    if unknown or not points:
        raise UserError(f"loss.distill_points {text!r}: choose from {', '.join(POINTS)} (comma-separated)")
    return points


class FeatureDistiller(nn.Module):
    """Captures the student's activations at the points during its forward pass (hooks), runs
    the teacher up to the deepest point, and returns the weighted adapter loss."""

    def __init__(self, student: nn.Module, teacher: nn.Module, points: list[str], weight: float,
                 probe: torch.Tensor) -> None:
        super().__init__()
        self.points, self.weight = points, weight
        self.s_index = {p: point_indices(student)[p] for p in points}
        self.t_index = {p: point_indices(teacher)[p] for p in points}
        # A tuple, not a submodule: the teacher's weights must stay out of parameters(), the
        # optimiser and the checkpoint.
        self.teacher_layers = tuple(teacher.model[:max(self.t_index.values()) + 1])
        self._captured: dict[str, torch.Tensor] = {}
        self._hooks = [student.model[i].register_forward_hook(self._capture(p)) for p, i in self.s_index.items()]
        was_training = student.training
        student.eval()  # the probe must not touch any running statistics
        with torch.no_grad():  # channel counts from one small forward pass of each
            student(probe)
            t_feats = self.teacher_features(probe)
        student.train(was_training)
        self.adapters = nn.ModuleDict({p: nn.Conv2d(self._captured[p].shape[1], t_feats[p].shape[1], 1)
                                       for p in points}).to(probe.device)
        self._captured.clear()

    def _capture(self, point: str):
        def hook(module, inputs, output):
            self._captured[point] = output
        return hook

    @torch.no_grad()
    def teacher_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = {i: p for p, i in self.t_index.items()}
        feats = {}
        for i, layer in enumerate(self.teacher_layers):
            x = layer(x)
            if i in wanted:
                feats[wanted[i]] = x.float()
        return feats

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The weighted loss for the student forward pass that just ran on ``x``."""
        t_feats = self.teacher_features(x)
        total = sum(F.mse_loss(self.adapters[p](self._captured[p].float()), t_feats[p]) for p in self.points)
        self._captured.clear()
        return self.weight * total / len(self.points)

    def remove(self) -> None:
        """Take the hooks off the student (training is over) and drop what they held."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._captured.clear()
