"""The CPU's (or GPU's) own ceiling and how much of it a piece of work uses.

``matmul_gflops``: the best dense fp32 matmul throughput torch reaches with a thread count, the
roofline that benchmark rows and training steps are both measured against. ``count_flops``:
every floating-point operation of one call (forward, backward and optimiser alike), by torch's
own FLOP counter, so a training step's share of that roofline needs no hand-kept MAC table.
"""

from __future__ import annotations

import time
from typing import Callable


def precision_name(dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"``: a torch dtype as reports name precisions."""
    import torch
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def matmul_gflops(threads: int | None = None, n: int = 1024, seconds: float = 1.0, dtype=None) -> dict:
    """Best dense matmul throughput (GFLOP/s, 2 n^3 per product) with ``threads`` threads (None:
    torch's current setting), over about ``seconds`` of repeated products; fp32 unless ``dtype``
    (a torch dtype: ``torch.bfloat16`` for work that autocast runs in bf16)."""
    import torch
    previous = torch.get_num_threads()
    threads = threads or previous
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):  # warm-up: allocation, kernel selection
            torch.mm(a, b)
        best, started = float("inf"), time.perf_counter()
        for _ in range(1000):
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
            if time.perf_counter() - started > seconds:
                break
    finally:
        torch.set_num_threads(previous)
    return {"gflops": 2 * n ** 3 / best / 1e9, "gmacs_per_s": n ** 3 / best / 1e9, "n": n, "threads": threads,
            "precision": precision_name(a.dtype)}


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (torch's FlopCounterMode: convolutions and
    matrix products, forward and backward). Work inside compiled kernels is not seen: the
    count is a floor."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())
