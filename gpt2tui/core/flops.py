"""Training FLOPs and model FLOPs utilisation (MFU): how much of the device's matmul speed a run turns into
training.

A token costs ``6·N + 12·n_layer·d_model·block`` FLOPs forward and backward (the PaLM appendix, as nanoGPT's
``estimate_mfu`` counts it): N is the parameter count without the position embeddings, whose lookup is no
matmul. MFU is the achieved FLOP/s over the device's peak. The peak is *measured* on the run's device, in the
run's matmul precision, when the run starts (a dense square matmul, best of a few), never taken from a table:
a card's datasheet figure is not what its clocks and power limit give, and an A100 peak assumed on an H100
reads as an MFU that is far too high (nanoGPT PR #464).
"""

from __future__ import annotations

import time
from typing import Any

GPU_PROBE_SIZE = 8192  # large enough to saturate an H100/H200 in bf16
CPU_PROBE_SIZE = 2048
PROBE_REPEATS = 5


def flops_per_token(config: Any, block_size: int, parameters: int) -> float:
    """Training FLOPs per token of a GPT-2 ``config`` on blocks of ``block_size`` with ``parameters`` in all."""
    width = int(config.n_embd)
    positions = int(config.n_positions) * width
    return 6.0 * (parameters - positions) + 12.0 * int(config.n_layer) * width * block_size


def matmul_dtype(mixed_precision: str) -> Any:
    """The dtype the run's matmuls compute in: bf16/fp16 under autocast, else fp32 (TF32 where allowed)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def matmul_peak(device: Any, dtype: Any, size: int | None = None, repeats: int = PROBE_REPEATS) -> float:
    """Best FLOP/s of a ``size``² matmul on ``device`` in ``dtype`` (with the process's TF32 setting)."""
    import torch

    device = torch.device(device)
    cuda = device.type == "cuda"
    size = size or (GPU_PROBE_SIZE if cuda else CPU_PROBE_SIZE)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up (kernel choice, clocks)
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        if cuda:
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    del a, b
    return 2.0 * size**3 / best


def device_peak(device: Any, mixed_precision: str) -> float | None:
    """The measured matmul peak a run's MFU is read against: on a CUDA device only (None elsewhere: on a CPU
    the probe would add a second to every start, and ``bench/cpu_training.py`` measures it there)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return matmul_peak(device, matmul_dtype(mixed_precision))


def mfu(tokens_per_second: float, per_token: float, peak: float | None, processes: int = 1) -> float | None:
    """Achieved training FLOP/s over the peak of all ``processes`` devices; None without a peak."""
    if not peak or per_token <= 0:
        return None
    return tokens_per_second * per_token / (peak * max(1, processes))


def peak_memory_bytes(device: Any) -> int | None:
    """The most memory the run's tensors have held on a CUDA device so far (None elsewhere)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
