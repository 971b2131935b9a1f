"""Activation memory of one forward pass of a torch module.

Convention (the same figures :mod:`crd_edge.analysis.onnx_counts` reads from an ONNX graph):

* one forward pass in eval mode under ``torch.no_grad()``, on zeros of the given input shape
  (batch 1 unless the shape says otherwise), in the module's own dtype (float32 for every
  crd-edge model: 4 bytes per element);
* **activations** are the tensors the ops of the pass create, counted by their storage's bytes:
  parameters and buffers are excluded, the input is excluded (reported as ``input_bytes``),
  the output is included. A view or an in-place op (``ReLU(inplace=True)``) creates no storage,
  so it adds nothing;
* ``peak_bytes``: the most activation bytes alive at once, sampled after each op has created
  its outputs (its inputs still alive), in eager PyTorch order with Python freeing each tensor
  when its last reference goes. It is the floor of what an inference runtime needs for
  activations without re-computation; a real allocator adds kernel workspaces (im2col buffers,
  packed weights) and rounding, which are not counted;
* ``total_bytes``: the bytes of every new storage the ops create, summed over the pass (what a
  runtime that never reused a buffer would allocate).

How: a ``TorchDispatchMode`` sees every aten op with its outputs; each new output storage is
tracked with a weak reference whose callback fires when the storage is freed. That is the
technique of torch's own ``torch.distributed._tools.mem_tracker.MemTracker``, whose forward peak
of ``ACT`` memory equals ``peak_bytes`` (tests/test_bench_counts.py checks it where it imports).
MemTracker is not used directly: it is a private module (``_tools``), needs torch.distributed,
and gives no sum over ops. The CPU profiler's memory columns count allocator bytes, kernel
workspaces included, so they have no closed form to test against.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


@dataclass(frozen=True)
class ActivationMemory:
    peak_bytes: int      # most activation bytes alive at once (input excluded, output included)
    total_bytes: int     # sum over ops of the bytes of the storages they create
    input_bytes: int     # the input tensor, counted apart
    input_shape: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"act_peak_bytes": self.peak_bytes, "act_total_bytes": self.total_bytes,
                "input_bytes": self.input_bytes}


class _ActivationTracker(TorchDispatchMode):
    """Live and total bytes of the storages created by the ops run under it."""

    def __init__(self, known: list[torch.Tensor]) -> None:
        super().__init__()
        self.storages = WeakIdKeyDictionary()   # storage -> (bytes, weak reference) or None
        for t in known:                         # parameters, buffers, the input: not activations
            self.storages[t.untyped_storage()] = None
        self.live = self.peak = self.total = 0

    def _freed(self, nbytes: int, _ref) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            if storage in self.storages:  # a view, an in-place result, or a known tensor
                continue
            nbytes = storage.nbytes()
            self.storages[storage] = (nbytes, weakref.ref(storage, lambda ref, n=nbytes: self._freed(n, ref)))
            self.live += nbytes
            self.total += nbytes
        self.peak = max(self.peak, self.live)
        return out


def count_activations(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 256, 256),
                      dtype: torch.dtype = torch.float32) -> ActivationMemory:
    """Peak and total activation bytes of one forward pass on zeros of ``input_shape``
    (module docstring: the convention)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(input_shape, dtype=dtype)
    known = [x, *model.parameters(), *model.buffers()]
    tracker = _ActivationTracker(known)
    try:
        with torch.no_grad(), tracker:
            out = model(x)
        del out
    finally:
        model.train(was_training)
    return ActivationMemory(tracker.peak, tracker.total, x.untyped_storage().nbytes(), tuple(input_shape))


PROBE_SIDE = 64  # small enough to cost nothing, large enough for every stride of our generators


def peak_bytes_at(model: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """Peak activation bytes of one forward pass at ``height`` x ``width``, scaled from a pass
    at :data:`PROBE_SIDE` px: a fully convolutional network's activations grow with the pixels,
    so the large size itself never has to be allocated to know what it needs."""
    probe = count_activations(model, (batch, 3, PROBE_SIDE, PROBE_SIDE))
    return int(probe.peak_bytes * height * width / PROBE_SIDE ** 2)


def available_memory() -> int | None:
    """Bytes the OS can give this process now (Linux's MemAvailable); None where it says none."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
