"""PatchGAN discriminator (pix2pix/CycleGAN ``n_layers`` discriminator).

Every output logit judges one overlapping 70x70 patch (n_layers=3). CycleGAN uses ndf 64 on
RGB images; pix2pix conditions on the input, so it sees 6 channels (input | output), ndf 128
in the CRD pix2pix recipe.
"""

from __future__ import annotations

from torch import nn

from crd_edge.models.layers import conv_bias, norm_layer
from crd_edge.models.registry import register_model


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, *,
                 norm: str = "instance") -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last one keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


register_model("patchgan", PatchDiscriminator, kind="discriminator", in_channels=3, ndf=64,
               doc="70x70 PatchGAN, 3 layers (CycleGAN: ndf 64, RGB)")
register_model("patchgan_pix2pix", PatchDiscriminator, kind="discriminator", in_channels=6, ndf=128,
               norm="batch", doc="conditional 70x70 PatchGAN (pix2pix: input|output, ndf 128)")
