"""ResNet generators of CycleGAN/pix2pix and their mobile (depthwise-separable) variant.

Layout (docs/method.md, "Architectures"): pad + conv7 (ngf), two stride-2 convs doubling the width,
``n_blocks`` residual blocks at 4*ngf, two x2 upsamplings back, pad + conv7 to RGB, tanh;
a norm + ReLU after every conv but the last. With the paper's options the layers sit in one
``nn.Sequential`` named ``model`` at the same indices as the original CycleGAN code, so its
state dicts load with no more than a key rename (see ``crd_edge.runtime.teachers``).
Two options for the student family: ``mid`` sets the residual blocks' width, and
``ends="shuffle"`` replaces the full-resolution conv7 layers by space-to-depth + conv3 in and
conv3 + depth-to-space out.
"""

from __future__ import annotations

import torch
from torch import nn

from crd_edge.models.family import ENDS  # the one list: sweep's --ends checks it too
from crd_edge.models.layers import check_choice, conv_bias, norm_layer, padded_conv, upsample_conv
from crd_edge.models.registry import register_model


class ResidualBlock(nn.Module):
    """x + F(x); F is two (pad, conv3, norm) stages with a ReLU between them.

    ``mobile=True`` replaces each 3x3 conv by depthwise 3x3 -> norm -> pointwise 1x1, the
    block GAN Compression and CRD use for their students and mobile teachers.
    """

    def __init__(self, dim: int, *, mobile: bool, padding: str, norm: str, affine: bool,
                 inner: int | None = None) -> None:
        super().__init__()
        bias = conv_bias(norm)
        inner = inner or dim  # the channels between the two stages (a pruned block has fewer)
        layers: list[nn.Module] = []
        for stage, (cin, cout) in enumerate(((dim, inner), (inner, dim))):
            if mobile:
                layers += padded_conv(cin, cin, 3, padding, groups=cin, bias=bias)
                layers += [norm_layer(norm, cin, affine), nn.Conv2d(cin, cout, 1, bias=bias)]
            else:
                layers += padded_conv(cin, cout, 3, padding, bias=bias)
            layers.append(norm_layer(norm, cout, affine))
            if stage == 0:
                layers.append(nn.ReLU(inplace=True))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GlobalContext(nn.Module):
    """Per-channel scale and shift computed from the whole feature map (global average pool ->
    1x1 conv -> ReLU -> 1x1 conv), applied as ``x * (1 + scale) + shift``.

    Why: a CycleGAN teacher's colour change depends on statistics of the whole image (its
    InstanceNorm layers span it), which a norm-free student with a local receptive field cannot
    see. This branch gives it those statistics at the cost of a few thousand MACs, with ops every
    runtime has (ReduceMean, 1x1 Conv, Mul, Add). The last conv starts at zero: the branch is
    the identity until training moves it.
    """

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, 2 * channels, 1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))).chunk(2, 1)
        return x * (1 + scale) + shift


class GlobalColour(nn.Module):
    """A per-image affine colour transform of the input, ``A x + b`` (3x3 matrix and offset),
    predicted from pooled features and the input's channel means and deviations.

    Why: the vintagify teacher's change is mostly a colour transform that differs per image (a
    per-crop affine fit to its output is 6.5 dB closer to it than the input on held-out crops),
    and a network whose receptive field is a fraction of the image learns it slowly, through
    every layer. This head predicts it directly; the rest of the student learns the local part
    (grain, texture) on top of it. The last layer starts at zero: the identity transform.
    Exported as ReduceMean, 1x1 convs and element-wise Mul/Add, which every runtime has.
    """

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels + 6, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, 12, 1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3), keepdim=True)
        std = (x - mean).pow(2).mean((2, 3), keepdim=True).add(1e-6).sqrt()
        stats = torch.cat([features.mean((2, 3), keepdim=True), mean, std], 1)
        p = self.expand(self.act(self.reduce(stats)))  # N x 12 x 1 x 1
        # out_c = x_c + sum_j A_cj x_j + b_c, written channel by channel (no batched matmul:
        # some converters lack it); A starts at 0, i.e. the identity.
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        return x + p[:, 0:3] * r + p[:, 3:6] * g + p[:, 6:9] * b + p[:, 9:12]


def _layer_widths(channels: list[int] | None, ends: str, ngf: int, n_blocks: int,
                  mid: int | None) -> tuple:
    """(stem, down1, stream, [inner width per block], up1, up2) of a ResNet generator.

    ``channels``: every layer's width, for a student pruned from a teacher (models/inherit.py):
    [stem, down1, residual stream, each block's inner width (n_blocks), up1, up2]; the layers keep
    the teacher's indices, so its weights map onto them by slicing. With shuffle ends there is no
    stem and no up2 (the layers at full resolution), so the list is [down1, stream, each block's
    inner width, up1]. Without it: CycleGAN's widths from ``ngf``; ``mid`` sets the stream's."""
    if channels is None:
        return ngf, ngf * 2, mid or ngf * 4, [None] * n_blocks, ngf * 2, ngf
    expected = n_blocks + (5 if ends == "conv7" else 3)
    if mid is not None or len(channels) != expected:
        groups = ("stem, down1, stream, {} block widths, up1, up2" if ends == "conv7"
                  else "down1, stream, {} block widths, up1")
        raise ValueError(f"channels: expected {expected} widths ({groups.format(n_blocks)}) "
                         f"with ends={ends!r} and no mid")
    if ends == "conv7":
        stem, down1, stream, *inner, up1, up2 = channels
        return stem, down1, stream, inner, up1, up2
    down1, stream, *inner, up1 = channels
    return None, down1, stream, inner, up1, None


class ResnetGenerator(nn.Module):
    """Image-to-image ResNet generator; NCHW float in [-1, 1] in and out."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 n_blocks: int = 9, *, mobile: bool = False, padding: str = "reflect",
                 norm: str = "instance", norm_affine: bool = False,
                 upsample: str = "convt3", input_skip: bool = False, global_context: bool = False,
                 global_colour: bool = False, mid: int | None = None, ends: str = "conv7",
                 channels: list[int] | None = None) -> None:
        super().__init__()
        self.input_skip = input_skip
        if global_colour and not input_skip:
            raise ValueError("global_colour transforms the input that the input skip adds: it needs input_skip=True")
        check_choice(ends, ENDS, "ends")
        bias = conv_bias(norm)
        stem, down1, stream, inner, up1, up2 = _layer_widths(channels, ends, ngf, n_blocks, mid)
        # ``ends``: what the network does at full resolution. ``conv7``: a 7x7 convolution in and
        # out (CycleGAN's). ``shuffle``: none at all: space-to-depth in, a 3x3 convolution at half
        # resolution, and depth-to-space out. A small student spends most of its time in its
        # full-resolution layers (3 to 16 channels fill few SIMD lanes: in one OpenVINO bf16
        # profile, 0.53 ms of the default's 3.6 ms in the 7x7 stem and 0.63 ms in the output
        # layer), so this is where latency is cheapest to cut: 0.54x the default's bf16 latency.
        if ends == "shuffle":
            layers: list[nn.Module] = [nn.PixelUnshuffle(2), *padded_conv(in_channels * 4, down1, 3, padding, bias=bias),
                                       norm_layer(norm, down1, norm_affine), nn.ReLU(inplace=True)]
            width, downs, ups = down1, (stream,), (up1,)
        else:
            layers = [*padded_conv(in_channels, stem, 7, padding, bias=bias),
                      norm_layer(norm, stem, norm_affine), nn.ReLU(inplace=True)]
            width, downs, ups = stem, (down1, stream), (up1, up2)
        # ``mid``: the residual blocks' width (default 4 x ngf).
        for out in downs:  # downsampling
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, out, norm_affine), nn.ReLU(inplace=True)]
            width = out
        self.down_end = len(layers)  # the encoder's last layer: its features feed the colour head
        self.colour = GlobalColour(width) if global_colour else None
        blocks = [ResidualBlock(width, mobile=mobile, padding=padding, norm=norm, affine=norm_affine,
                                inner=inner[i]) for i in range(n_blocks)]
        if global_context:  # before the first and after the last block (see GlobalContext)
            blocks = [GlobalContext(width), *blocks, GlobalContext(width)]
        layers += blocks
        for out in ups:  # upsampling
            layers += [*upsample_conv(width, out, upsample, padding, bias),
                       norm_layer(norm, out, norm_affine), nn.ReLU(inplace=True)]
            width = out
        if ends == "shuffle":
            layers += [*padded_conv(width, out_channels * 4, 3, padding, bias=True), nn.PixelShuffle(2), nn.Tanh()]
        else:
            layers += [*padded_conv(width, out_channels, 7, padding, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_skip:
            return self.model(x)
        # Global input skip: tanh(h + atanh(x)), i.e. the network predicts a change of the
        # input in tanh space; h = 0 is the identity. Computed with tanh's addition formula,
        # tanh(h + atanh(x)) = (t + x) / (1 + t x) with t = tanh(h): the same function with no
        # logarithm, whose kernel is a slow reference implementation in OpenVINO (0.57 of 11.4 ms
        # of the student) and missing from some delegates. |x| <= 0.999 keeps 1 + t x >= 0.001.
        x = x.clamp(-0.999, 0.999)
        if self.colour is None:
            t = self.model(x)
        else:
            features = self.model[:self.down_end](x)
            t = self.model[self.down_end:](features)
            x = self.colour(x, features).clamp(-0.999, 0.999)
        return (t + x) / (1 + t * x)


def _resnet(**kwargs) -> ResnetGenerator:
    return ResnetGenerator(**kwargs)


register_model("resnet_9blocks", _resnet, stride=4, ngf=64, n_blocks=9,
               doc="CycleGAN/pix2pix ResNet-9blocks generator (11.4 M params at ngf 64)")
register_model("resnet_6blocks", _resnet, stride=4, ngf=64, n_blocks=6,
               doc="CycleGAN ResNet-6blocks generator (for 128x128 data)")
register_model("mobile_resnet_9blocks", _resnet, stride=4, ngf=16, n_blocks=9, mobile=True,
               doc="Mobile ResNet-9blocks (depthwise-separable blocks), width set by ngf")
for _ngf in (8, 12, 16, 64):
    register_model(f"mobile_resnet_9blocks_ngf{_ngf}", _resnet, stride=4, ngf=_ngf, n_blocks=9, mobile=True,
                   doc=f"Mobile ResNet-9blocks ngf {_ngf}, paper-exact layers"
                       + (" (the CRD student)" if _ngf == 16 else "")
                       + (" (the CRD mobile teacher)" if _ngf == 64 else ""))
# A former default student: the paper's student with two changes.
# 1. Upsampling: ConvTranspose2d(k3, output_padding=1) fails to convert with litert-torch and its
#    uneven overlap makes checkerboards; k4/s2 converts, overlaps evenly and costs +0.12 true
#    GMAC (nearest+conv would cost +0.45 GMAC, a 45% slower student on a CPU).
# 2. A global input skip (predict the change of the input): no parameters, 4 element-wise ops
#    per pixel. In short CPU runs on the built-in photos it ended 2-7 dB closer to the teacher
#    on held-out photos than the same student without it (see README, "Results").
register_model("mobile_resnet_9blocks_ngf16_edge", _resnet, stride=4, ngf=16, n_blocks=9, mobile=True,
               upsample="convt4", input_skip=True,
               doc="Paper student + ConvTranspose k4 upsampling + input skip; InstanceNorm (the default before _lite)")
# A former default student: ..._edge with no normalisation and zero padding, so every layer is a
# conv + bias (+ ReLU), which every runtime fuses and quantises. Measured on the built-in job
# (3000 steps, 2-core CPU): the same held-out fidelity to the vintagify teacher as ..._edge
# (+0.56 dB over copying vs +0.48), 22% faster in OpenVINO fp32 (7.9 vs 10.2 ms at 256 px: no
# MVN, whose 24 InstanceNorms took 15% of ..._edge's time, and no reference-kernel reflect Pads),
# and full-integer int8 passes its verification in onnxruntime, OpenVINO and TFLite (48-55 dB;
# ..._edge's int8 fell to 16-30 dB, InstanceNorm's per-image ranges quantise badly).
register_model("mobile_resnet_9blocks_ngf16_lite", _resnet, stride=4, ngf=16, n_blocks=9, mobile=True,
               upsample="convt4", input_skip=True, norm="none", padding="zero",
               doc="Norm-free student: ..._edge without normalisation, zero padding (fuses and quantises)")
# ..._lite plus two GlobalContext branches (whole-image statistics -> per-channel scale and
# shift), so a norm-free student can follow a teacher whose colour change depends on the whole
# image. About 17 k parameters and a few thousand MACs more than ..._lite.
register_model("mobile_resnet_9blocks_ngf16_gc", _resnet, stride=4, ngf=16, n_blocks=9, mobile=True,
               upsample="convt4", input_skip=True, norm="none", padding="zero", global_context=True,
               doc="..._lite with global-context branches (per-channel scale/shift from pooled features)")
# ..._lite plus a GlobalColour head: a per-image affine colour transform of the input, predicted
# from pooled encoder features, under the local network's correction.
register_model("mobile_resnet_9blocks_ngf16_colour", _resnet, stride=4, ngf=16, n_blocks=9, mobile=True,
               upsample="convt4", input_skip=True, norm="none", padding="zero", global_colour=True,
               doc="..._lite with a global colour head (per-image affine colour transform of the input)")
# The default student, inherited from the teacher (crd_edge/models/inherit.py): a CycleGAN
# ResNet-9blocks teacher's own layout, pruned to these widths [stem, down1, residual stream,
# 9 block inner widths, up1, up2], InstanceNorm kept (it makes the teacher's per-image colour
# change), zero padding and k4 upsampling (which convert and run fast everywhere), plus the
# global colour head, which starts at the identity and is the one part the teacher has no
# weights for. With the head, 1500 steps reached held-out +2.3 dB over copying the input against
# +1.0 dB without it after 3000 (docs/distill.md). Its weights come from the teacher
# (student.init=teacher); trained from random weights it is an ordinary small dense student.
INHERITED_CHANNELS = [8, 16, 64] + [24] * 9 + [16, 8]
register_model("resnet_9blocks_inherited", _resnet, stride=4, ngf=64, n_blocks=9, norm_affine=True, input_skip=True,
               padding="zero", upsample="convt4", channels=INHERITED_CHANNELS, global_colour=True,
               doc="Default student: the teacher's ResNet-9blocks pruned to 1.4 GMACs, starts from its weights; colour head")
# The default student with shuffle ends (no full-resolution layers): space-to-depth, one conv3 at
# half resolution to down1's width, and up1 -> conv3 -> depth-to-space out. Its widths are
# [down1, residual stream, 9 block inner widths, up1]; the layers between the ends inherit the
# teacher's as the default's do, and the two new end convs start from a least-squares fit to the
# teacher's down1 output and to its output (crd_edge/models/inherit.py).
INHERITED_SHUFFLE_CHANNELS = [16, 64] + [24] * 9 + [16]
register_model("resnet_9blocks_inherited_shuffle", _resnet, stride=4, ngf=64, n_blocks=9, norm_affine=True,
               input_skip=True, padding="zero", upsample="convt4", ends="shuffle",
               channels=INHERITED_SHUFFLE_CHANNELS, global_colour=True,
               doc="resnet_9blocks_inherited with shuffle ends: no full-resolution layers; starts from the teacher")
