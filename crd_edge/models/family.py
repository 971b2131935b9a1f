"""The student family: the from-scratch student's design (norm-free, zero-padded ResNet with an input
skip, k4 transposed-conv upsampling and a global colour head, so every layer fuses and
quantises) at other widths, depths and block types, to pick the one that fits a latency budget on a given device.

A member is named ``w{width}[-m{mid}]-b{blocks}-{block}[-shuffle]``: ``width`` the first
layer's channels (ngf); ``mid`` the residual blocks' channels (4 x width unless named);
``blocks`` residual blocks; ``block`` ``dw`` (depthwise-separable, the paper's mobile block) or
``conv`` (two plain 3x3 convolutions: more MACs, but dense work that matrix engines and int8
kernels run well); ``-shuffle``: no full-resolution convolutions (space-to-depth in,
depth-to-space out: ``ends`` of :class:`~crd_edge.models.resnet.ResnetGenerator`). Each member
is :data:`FAMILY_BASE` with those constructor arguments, so checkpoints, export and
the size rule treat it like any other student.
"""

from __future__ import annotations

from dataclasses import dataclass

from crd_edge.errors import UserError

__all__ = ["FAMILY_BASE", "BLOCK_TYPES", "ENDS", "Member", "family_grid"]

# The default student before students inherited the teacher's weights; still the base of every
# member, because a member of another width has no teacher layout to inherit into.
FAMILY_BASE = "mobile_resnet_9blocks_ngf16_colour"
BLOCK_TYPES = ("dw", "conv")
ENDS = ("conv7", "shuffle")


@dataclass(frozen=True, order=True)
class Member:
    width: int
    blocks: int
    block: str = "dw"
    mid: int = 0  # the residual blocks' channels; 0: 4 x width
    ends: str = "conv7"

    @property
    def wide(self) -> bool:
        """Residual blocks at another width than 4 x width."""
        return bool(self.mid) and self.mid != 4 * self.width

    @property
    def middle(self) -> int:
        return self.mid or 4 * self.width

    @property
    def name(self) -> str:
        mid = f"-m{self.mid}" if self.wide else ""
        return f"w{self.width}{mid}-b{self.blocks}-{self.block}" + ("-shuffle" if self.ends == "shuffle" else "")

    def kwargs(self) -> dict:
        """Constructor arguments on top of :data:`FAMILY_BASE`'s."""
        extra = {"mid": self.mid} if self.wide else {}
        if self.ends != "conv7":
            extra["ends"] = self.ends
        return {"ngf": self.width, "n_blocks": self.blocks, "mobile": self.block == "dw", **extra}

    @classmethod
    def from_dict(cls, d: dict) -> Member:
        """The member that :meth:`as_dict` described (a sweep.jsonl row, a run's selection)."""
        mid = d.get("mid") or 0
        return cls(d["width"], d["blocks"], d.get("block", "dw"), 0 if mid == 4 * d["width"] else mid,
                   d.get("ends", "conv7"))

    def as_dict(self) -> dict:
        return {"name": self.name, "width": self.width, "mid": self.middle, "blocks": self.blocks,
                "block": self.block, "ends": self.ends, "arch": FAMILY_BASE, "kwargs": self.kwargs()}


def family_grid(widths: list[int], blocks: list[int], block_types: list[str],
                mids: list[int] | None = None, ends: list[str] | None = None) -> list[Member]:
    """Every combination, in a fixed order (smallest first); ``mids`` empty: 4 x each width."""
    mids, ends = mids or [0], ends or ["conv7"]
    checks = ([(w, "--widths", 4, 256) for w in widths] + [(b, "--blocks", 1, 32) for b in blocks]
              + [(m, "--mids", 8, 1024) for m in mids if m])
    for value, what, low, high in checks:
        if not low <= value <= high:
            raise UserError(f"{what} {value}: expected {low}-{high}")
    unknown = [b for b in block_types if b not in BLOCK_TYPES]
    if unknown:
        raise UserError(f"--block {unknown[0]}: expected one of {', '.join(BLOCK_TYPES)}")
    unknown = [e for e in ends if e not in ENDS]
    if unknown:
        raise UserError(f"--ends {unknown[0]}: expected one of {', '.join(ENDS)}")
    # One member per distinct network: a mid equal to 4 x width is the plain member.
    return sorted({Member(w, b, t, 0 if m == 4 * w else m, e) for w in widths for b in blocks
                   for t in block_types for m in mids for e in ends})
