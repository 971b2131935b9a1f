"""The pix2pix U-Net generator (``unet_256``: 8 downsamplings, 256 -> 1 -> 256).

Built iteratively from the innermost level outwards; each non-outermost level returns
``cat([x, up(down(x))])`` so the decoder sees the encoder features (the skip connections).
Parameter counts equal the original implementation's (tested against docs/method.md).
"""

from __future__ import annotations

import torch
from torch import nn

from crd_edge.models.layers import conv_bias, norm_layer
from crd_edge.models.registry import register_model


class UnetLevel(nn.Module):
    """One level: LeakyReLU -> conv4/s2 -> norm -> [inner] -> ReLU -> convT4/s2 -> norm."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None, *, in_channels: int | None = None,
                 outermost: bool = False, norm: str = "batch", dropout: bool = False) -> None:
        super().__init__()
        bias = conv_bias(norm)
        in_channels = outer if in_channels is None else in_channels
        up_in = inner if sub is None else inner * 2  # the inner level concatenates its skip
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        self.outermost = outermost
        if outermost:
            layers = [down, sub, nn.ReLU(True),
                      nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1), nn.Tanh()]
        else:
            layers = [nn.LeakyReLU(0.2, True), down]
            if sub is not None:
                layers += [norm_layer(norm, inner), sub]
            layers += [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1, bias=bias),
                       norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` levels; a 256x256 input needs ``num_downs=8``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 num_downs: int = 8, *, norm: str = "batch", dropout: bool = False) -> None:
        super().__init__()
        level = UnetLevel(ngf * 8, ngf * 8, None, norm=norm)
        for _ in range(num_downs - 5):
            level = UnetLevel(ngf * 8, ngf * 8, level, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):
            level = UnetLevel(ngf * mult, ngf * mult * 2, level, norm=norm)
        self.model = UnetLevel(out_channels, ngf, level, in_channels=in_channels, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


register_model("unet_256", UnetGenerator, stride=lambda kw: 2 ** kw["num_downs"], ngf=64, num_downs=8,
               doc="pix2pix U-Net-256 (BatchNorm), width set by ngf")
register_model("unet_256_ngf16", UnetGenerator, stride=lambda kw: 2 ** kw["num_downs"], ngf=16, num_downs=8,
               doc="pix2pix U-Net-256 student, ngf 16")
