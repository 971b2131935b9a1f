"""Building blocks shared by the generators: padding, normalisation and upsampling choices.

The options exist for deployment: the paper's layers (reflection padding, InstanceNorm,
``ConvTranspose2d(k3, output_padding=1)``) are exactly what several edge runtimes lack or run
slowly (docs/method.md, "What these generators do to exporters"), so students can be built from friendlier equivalents.
"""

from __future__ import annotations

from torch import nn

PADDINGS = ("reflect", "replicate", "zero")
NORMS = ("instance", "batch", "none")
UPSAMPLES = ("convt3", "convt4", "nearest")


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise ValueError(f"{option}={value!r}: expected one of {', '.join(choices)}")
    return value


def norm_layer(kind: str, channels: int, affine: bool = False) -> nn.Module:
    """InstanceNorm (no running stats, as in CycleGAN), BatchNorm or identity."""
    check_choice(kind, NORMS, "norm")
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=affine, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def conv_bias(norm: str) -> bool:
    """Convs before BatchNorm need no bias (it is absorbed); CycleGAN keeps it with InstanceNorm."""
    return norm != "batch"


def padded_conv(cin: int, cout: int, kernel: int, padding: str, *, groups: int = 1,
                bias: bool = True) -> list[nn.Module]:
    """A stride-1 'same' conv with the requested padding mode, as explicit layers.

    Reflection/replicate padding is a separate module (as in the original generators) so
    state-dict keys and exporters see the same structure; zero padding folds into the conv.
    """
    check_choice(padding, PADDINGS, "padding")
    pad = kernel // 2
    if padding == "zero":
        return [nn.Conv2d(cin, cout, kernel, padding=pad, groups=groups, bias=bias)]
    pad_module = nn.ReflectionPad2d(pad) if padding == "reflect" else nn.ReplicationPad2d(pad)
    return [pad_module, nn.Conv2d(cin, cout, kernel, groups=groups, bias=bias)]


def upsample_conv(cin: int, cout: int, mode: str, padding: str, bias: bool) -> list[nn.Module]:
    """A x2 upsampling layer.

    * ``convt3``: ``ConvTranspose2d(k3, s2, p1, output_padding=1)``, the paper's; litert-torch
      cannot convert it and its uneven kernel overlap makes checkerboards.
    * ``convt4``: ``ConvTranspose2d(k4, s2, p1)``; kernel divisible by the stride (even
      overlap), converts with litert-torch, +78% MACs in this layer versus k3.
    * ``nearest``: nearest resize then a 3x3 conv at the output resolution; supported by every
      runtime and delegate, no checkerboard, but 4x the MACs of ``convt3`` in this layer.
    """
    check_choice(mode, UPSAMPLES, "upsample")
    if mode == "convt3":
        return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    if mode == "convt4":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), *padded_conv(cin, cout, 3, padding, bias=bias)]
