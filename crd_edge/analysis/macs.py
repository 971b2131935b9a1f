"""Parameter and MAC counting on top of torch's own FLOP counter.

Two conventions, both reported because papers and devices disagree:

* ``true``: every multiply-add once (torch's ``FlopCounterMode`` formulas, FLOPs / 2), plus the
  element-wise work of normalisation layers counted as fvcore does: 4 ops per element for a
  norm that computes statistics (InstanceNorm, training BatchNorm), 5 with an affine
  transform, and 1 (2 with affine) for an inference BatchNorm. InstanceNorm is real work on a
  device and the MAC-only count hides it.
* ``paper``: the ``torchprofile`` convention of GAN Compression / OMGD / CRD: convolutions only,
  a transposed convolution counted as ``output_elements x C_in x k^2`` (4x its true cost at
  stride 2), normalisation free.

Both reproduce docs/method.md, "Architectures" (tested).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop

_conv_flop_of_shapes = conv_flop.__wrapped__  # torch's own formula, taking shapes

aten = torch.ops.aten


@dataclass(frozen=True)
class MacsReport:
    params: int
    conv_macs: int       # convolutions and matmuls, each multiply-add once
    norm_ops: int        # normalisation element-wise work (fvcore's convention)
    paper_macs: int      # torchprofile convention (the papers' tables)
    input_shape: tuple[int, ...]

    @property
    def true_macs(self) -> int:
        return self.conv_macs + self.norm_ops

    def as_dict(self) -> dict:
        return {**asdict(self), "true_macs": self.true_macs}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 256, 256)) -> MacsReport:
    """Count MACs of one forward pass of ``model`` on zeros of ``input_shape`` (eval mode)."""
    paper = [0]

    def convolution(x, w, bias, stride, padding, dilation, transposed, *args, out_shape=None, **kw):
        # The paper convention, recorded on the side: torchprofile multiplies the output size by
        # the kernel's input-side fan-in, which for a transposed conv is C_in (w[0]) per tap.
        fan_in = w[0] if transposed else w[1]
        paper[0] += math.prod(out_shape) * math.prod(w[2:]) * fan_in
        return _conv_flop_of_shapes(x, w, bias, stride, padding, dilation, transposed, out_shape=out_shape)

    def batch_norm(x, weight, bias, running_mean, running_var, training, *args, out_shape=None, **kw):
        per_element = (4 if training or running_mean is None else 1) + (weight is not None)
        return math.prod(x) * per_element

    # Keys: the packet (used to look up a formula) and its overloads (checked before torch
    # decomposes an op it has no formula for; native_batch_norm would decompose away).
    mapping = {}
    for packet, formula in ((aten.convolution, convolution), (aten.native_batch_norm, batch_norm)):
        mapping[packet] = formula
        mapping.update({getattr(packet, name): formula for name in packet.overloads()})
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    try:
        with counter, torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()["Global"]
    norm_ops = sum(v for k, v in counts.items() if k is aten.native_batch_norm)
    conv_flops = sum(v for k, v in counts.items() if k is not aten.native_batch_norm)
    return MacsReport(count_params(model), conv_flops // 2, norm_ops, paper[0], tuple(input_shape))


def format_count(n: float, unit: str = "") -> str:
    """1_408_000_000 -> '1.408 G'."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip()
