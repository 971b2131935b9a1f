"""The student family: the default student's design (norm-free, zero-padded ResNet with an input
skip, k4 transposed-conv upsampling and a global colour head, so every layer fuses and
quantises) at other widths, depths and block types, to pick the one that fits a latency budget on a given device.

A member is named ``w{width}-b{blocks}-{block}``: ``width`` the first layer's channels (ngf;
the residual blocks run at 4x that), ``blocks`` residual blocks, ``block`` ``dw``
(depthwise-separable, the paper's mobile block) or ``conv`` (two plain 3x3 convolutions: more
MACs, but dense work that matrix engines and int8 kernels run well). Each member is the
registered default student with those constructor arguments, so checkpoints, export and the
size rule treat it like any other student.
"""

from __future__ import annotations

from dataclasses import dataclass

from crd_edge.errors import UserError

__all__ = ["FAMILY_BASE", "BLOCK_TYPES", "Member", "family_grid"]

FAMILY_BASE = "mobile_resnet_9blocks_ngf16_colour"  # the default student (config.py's student.arch)
BLOCK_TYPES = ("dw", "conv")


@dataclass(frozen=True, order=True)
class Member:
    width: int
    blocks: int
    block: str = "dw"

    @property
    def name(self) -> str:
        return f"w{self.width}-b{self.blocks}-{self.block}"

    def kwargs(self) -> dict:
        """Constructor arguments on top of :data:`FAMILY_BASE`'s."""
        return {"ngf": self.width, "n_blocks": self.blocks, "mobile": self.block == "dw"}

    def as_dict(self) -> dict:
        return {"name": self.name, "width": self.width, "blocks": self.blocks, "block": self.block,
                "arch": FAMILY_BASE, "kwargs": self.kwargs()}


def family_grid(widths: list[int], blocks: list[int], block_types: list[str]) -> list[Member]:
    """Every combination, in a fixed order (smallest first)."""
    for value, what, low, high in [(w, "--widths", 4, 256) for w in widths] + [(b, "--blocks", 1, 32) for b in blocks]:
        if not low <= value <= high:
            raise UserError(f"{what} {value}: expected {low}-{high}")
    unknown = [b for b in block_types if b not in BLOCK_TYPES]
    if unknown:
        raise UserError(f"--block {unknown[0]}: expected one of {', '.join(BLOCK_TYPES)}")
    return sorted({Member(w, b, t) for w in widths for b in blocks for t in block_types})
