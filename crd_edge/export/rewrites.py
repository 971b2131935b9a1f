"""Exact rewrites of layers that some targets lack or run badly (docs/method.md, "What these generators do to exporters").

Each rewrite returns a module computing the same function as the original, to float rounding
(tests/test_rewrites.py proves each one on random and real inputs). Targets name the rewrites
they need in their ``REWRITES``; :func:`apply_rewrites` applies them to a copy of the model and
reports what changed, which goes into manifest.json.

* ``convtranspose_k3_to_k4``: ``ConvTranspose2d(k3, s2, p1, output_padding=1)`` (the classic
  generators' upsampling, which litert-torch cannot legalise) becomes ``ConvTranspose2d(k4, s2,
  p1)`` with the kernel zero-extended by one row and column at the far end. Both layers place
  input pixel i, kernel tap k at output 2i - 1 + k and produce 2n outputs, so the extra taps
  (always zero) change nothing.
* ``reflect_pad_to_slices``: ``ReflectionPad2d(p)`` becomes concatenations of one-pixel slices
  (Slice + Concat only), for runtimes without a reflect Pad or with a slow one, and to avoid the
  seven shape-computing nodes the ONNX exporter emits around each reflect Pad.
* ``narrow_conv_to_space_to_depth``: the generators' last layer, a 7x7 conv to 3 channels at full
  resolution, fills 3 of a SIMD register's 16 lanes (measured: 22% of the student's OpenVINO
  time at 33 GMAC/s). It becomes a stride-4 conv with 48 = 3 x 4 x 4 output channels and a
  10x10 kernel (each output channel holds the 7x7 kernel shifted to one of the 16 positions of
  a 4x4 output block) followed by ``PixelShuffle(4)``: 2x the MACs, but wide enough to vectorise.
  ``narrow_conv_to_space_to_depth_r2`` is the same with 2x2 blocks (12 channels, 8x8 kernel).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ReflectPadSlices(nn.Module):
    """``ReflectionPad2d`` built from one-pixel slices and concatenation."""

    def __init__(self, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = tuple(int(p) for p in padding)  # left, right, top, bottom (torch order)

    @staticmethod
    def _pad_dim(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
        if before == 0 and after == 0:
            return x
        size = x.shape[dim]
        # Reflection excludes the edge pixel: left side is x[p], ..., x[1]; right side is
        # x[n-2], ..., x[n-1-p]. One narrow() per pixel keeps the graph to Slice + Concat.
        left = [x.narrow(dim, i, 1) for i in range(before, 0, -1)]
        right = [x.narrow(dim, size - 1 - i, 1) for i in range(1, after + 1)]
        return torch.cat([*left, x, *right], dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.padding
        return self._pad_dim(self._pad_dim(x, -1, left, right), -2, top, bottom)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def convtranspose_k3_to_k4(layer: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """The k4 equivalent of a ``ConvTranspose2d(k3, s2, p1, output_padding=1)``."""
    new = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, 4, stride=2, padding=1,
                             groups=layer.groups, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :, :3, :3] = layer.weight
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new.to(layer.weight.dtype)


class SpaceToDepthConv(nn.Module):
    """A stride-1 conv with few output channels (unpadded or zero-padded), computed as a
    stride-``r`` conv with ``r*r`` times the output channels followed by ``PixelShuffle(r)``.
    Exact: output pixel (r*i + a, r*j + b) of channel c is channel c*r*r + a*r + b of the
    strided conv, whose kernel is the original one placed at offset (a, b) in a
    (k + r - 1)-wide window; the strided conv takes the original's zero padding, since both
    read input pixel r*i + a + k - p for tap k."""

    def __init__(self, conv: nn.Conv2d, r: int = 4) -> None:
        super().__init__()
        out_ch, in_ch, kh, kw = conv.weight.shape
        self.original, self.r = conv, r
        weight = conv.weight.new_zeros(out_ch * r * r, in_ch, kh + r - 1, kw + r - 1)
        with torch.no_grad():
            for a in range(r):
                for b in range(r):
                    weight[a * r + b::r * r, :, a:a + kh, b:b + kw] = conv.weight
        self.strided = nn.Conv2d(in_ch, out_ch * r * r, (kh + r - 1, kw + r - 1), stride=r,
                                 padding=conv.padding, bias=False)
        self.strided.weight = nn.Parameter(weight, requires_grad=False)
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(out_ch)
        self.register_buffer("bias", bias.detach().repeat_interleave(r * r).view(1, -1, 1, 1))
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.original.kernel_size
        ph, pw = self.original.padding
        if (x.shape[-2] + 2 * ph - kh + 1) % self.r or (x.shape[-1] + 2 * pw - kw + 1) % self.r:
            return self.original(x)  # output not a whole number of r x r blocks (static at export)
        return self.shuffle(self.strided(x) + self.bias)


def _is_narrow_output_conv(layer: nn.Module) -> bool:
    return (type(layer) is nn.Conv2d and layer.out_channels <= 4 and layer.stride == (1, 1)
            and (layer.padding == (0, 0) or layer.padding_mode == "zeros")
            and isinstance(layer.padding, tuple) and layer.dilation == (1, 1) and layer.groups == 1
            and layer.kernel_size[0] >= 3)


def _is_k3_output_padding(layer: nn.Module) -> bool:
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (3, 3)
            and layer.stride == (2, 2) and layer.padding == (1, 1) and layer.output_padding == (1, 1)
            and layer.dilation == (1, 1))


def _replace(model: nn.Module, match, build) -> int:
    count = 0
    for name, child in list(model.named_children()):
        if match(child):
            setattr(model, name, build(child))
            count += 1
        else:
            count += _replace(child, match, build)
    return count


REWRITES = {
    "convtranspose_k3_to_k4": (_is_k3_output_padding, convtranspose_k3_to_k4),
    "reflect_pad_to_slices": (lambda m: isinstance(m, nn.ReflectionPad2d),
                              lambda m: ReflectPadSlices(m.padding)),
    "narrow_conv_to_space_to_depth": (_is_narrow_output_conv, SpaceToDepthConv),
    # r = 2: a 8x8 kernel, 12 channels, 1.3x the MACs instead of 2x. OpenVINO runs the default
    # student 4% faster with it (7.95 vs 8.28 ms), onnxruntime 9% slower (13.95 vs 12.84 ms).
    "narrow_conv_to_space_to_depth_r2": (_is_narrow_output_conv, lambda conv: SpaceToDepthConv(conv, r=2)),
}


def apply_rewrites(model: nn.Module, names: tuple[str, ...] | list[str]) -> tuple[nn.Module, list[dict]]:
    """A rewritten copy of ``model`` (the original is untouched) and one record per rewrite
    that changed something: ``{"name": ..., "layers": count}``."""
    if isinstance(model, torch.jit.ScriptModule):
        return model, []  # TorchScript cannot be edited layer by layer; exported as it is
    model = copy.deepcopy(model).eval()
    applied = []
    for name in names:
        match, build = REWRITES[name]
        count = _replace(model, match, build)
        if count:
            applied.append({"name": name, "layers": count})
    return model, applied
