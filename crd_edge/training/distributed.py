"""DistributedDataParallel plumbing for ``torchrun``: rank discovery, sharding, reductions.

Without ``torchrun`` (no WORLD_SIZE in the environment) everything degrades to a single
process, so the training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard_epoch(num_items: int, epoch: int, seed: int, batch_size: int, info: DistInfo) -> list[list[int]]:
    """This rank's batches for ``epoch``: one seeded permutation shared by all ranks, padded by
    wrapping around to a whole number of global batches, item ``g * world + rank`` to rank
    ``rank`` (so global step k uses the same items as a single process with a world-size times
    larger batch). Deterministic in (seed, epoch): a resumed run sees the same order."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_items, generator=gen).tolist()
    per_step = batch_size * info.world_size
    steps = -(-num_items // per_step)
    order = (order * (steps * per_step // max(num_items, 1) + 1))[: steps * per_step]
    mine = order[info.rank::info.world_size]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over ranks (every rank gets the result)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / info.world_size for k, v in zip(keys, tensor)}


def average_gradients(params, info: DistInfo) -> None:
    """All-reduce (mean) the gradients of modules that are not wrapped in DDP: the teacher's
    discriminator and the online teacher, so every rank keeps identical copies of them."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (a Ctrl-C seen by one rank stops all)."""
    if not info.enabled:
        return flag
    if dist.get_backend() != "nccl":
        device = torch.device("cpu")
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor)
    return bool(tensor.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
