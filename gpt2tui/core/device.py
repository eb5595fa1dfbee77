"""One device policy for training, generation and evaluation: CPU threads (chosen before torch is imported),
the precision ``--mixed-precision auto`` trains in, and the GPU levers (``torch.compile``, TF32).

torch's OpenMP threads spin-wait at every barrier for the slowest thread. When another process keeps one of
the cores busy, the thread that shares that core falls behind and the others burn their time spinning: on a
2-core machine training drops to a third of its idle speed. So a process that owns its run picks its thread
count from the cores that are actually free when it starts (``--threads N`` overrides), and when it shares the
machine it lets waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``); OpenMP reads both only when torch loads
it. On an idle machine the waiting policy stays OpenMP's own: sleeping threads cost a tiny model about a
quarter of its speed (bench/busy_cpu.py).

bf16 autocast is only a win on a CPU that computes bf16 natively (AVX512_BF16 or AMX): elsewhere oneDNN
emulates it (on an AVX2 CPU, 20 steps of the small model that take 16 s in fp32 did not
finish in 5 minutes). Even with native bf16, a narrow model gains
nothing (the casts cost what the matmuls save: bench/cpu_training.py), so ``auto`` picks bf16 on a CPU only
for a model at least :data:`BF16_MIN_WIDTH` wide on a CPU whose flags say native bf16, and when the flags
cannot be read, only if a short matmul probe shows bf16 clearly faster. It never picks a precision slower
than fp32.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSY_PERCENT = 50.0
"""A core busier than this (over the sampling window) is counted as taken by another process."""
SAMPLE_SECONDS = 0.3
WAIT_POLICY = "PASSIVE"
APPLIED_ENV = "GPT2TUI_OMP_NUM_THREADS"
"""Records the value gpt2tui itself put in OMP_NUM_THREADS, so a child process (a run started from the TUI
or the CLI) plans its own threads instead of taking the parent's choice for the user's."""


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads this process computes with, and why (shown in the run header)."""

    threads: int
    cores: int  # the cores this process may run on
    busy: int  # of those, how many another process was keeping busy at the start
    reason: str  # "--threads", "OMP_NUM_THREADS", "free cores" or "torch already loaded"

    def describe(self) -> str:
        busy = f", {self.busy} busy" if self.busy else ""
        return f"{self.threads} of {self.cores} cores{busy} ({self.reason})"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(cores: int, seconds: float = SAMPLE_SECONDS) -> int:
    """Cores of this process's affinity set that others keep busier than :data:`BUSY_PERCENT`.

    Time in niced processes counts only where the scheduler groups tasks by session (Linux's autogroup, on by
    default in most distributions): there a ``nice`` job started from another terminal still takes its share.
    With autogroup off, a niced job yields its core to a normal-priority run almost entirely, so computing
    around it would only halve the run's speed.
    """
    import psutil

    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = list(range(cores))
    counted = BUSY_FIELDS + (("nice",) if autogroup_enabled() else ())
    before = psutil.cpu_times(percpu=True)
    time.sleep(seconds)
    # From the counters themselves: psutil's cpu_times_percent gave raw tick counts in this VM (30 for a fully
    # busy core over 0.3 s), which read every core as idle.
    busy = [percent_busy(a, b, counted) for a, b in zip(before, psutil.cpu_times(percpu=True), strict=False)]
    # Summed over the cores, not counted per core: the scheduler moves a busy process between cores within
    # the sample (measured: one spinning process read as 25% of one core and 76% of the other).
    total = sum(busy[cpu] for cpu in allowed if cpu < len(busy))
    return min(len(allowed), int((total + 100.0 - BUSY_PERCENT) // 100.0))


BUSY_FIELDS = ("user", "system", "irq", "softirq", "steal")
"""CPU time that another task (or the hypervisor) takes from a core; Linux counts guest time inside user."""


def percent_busy(before: Any, after: Any, counted: tuple[str, ...]) -> float:
    """How busy one core was between two readings of its time counters, in percent of the time between them."""
    fields = [name for name in after._fields if name not in ("guest", "guest_nice")]  # inside user and nice
    total = sum(getattr(after, name) - getattr(before, name) for name in fields)
    busy = sum(getattr(after, name, 0.0) - getattr(before, name, 0.0) for name in counted)
    return 100.0 * busy / total if total > 0 else 0.0


AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def autogroup_enabled() -> bool:
    """Whether nice values only rank tasks within a session (Linux autogroup; elsewhere, or absent: no)."""
    try:
        return AUTOGROUP.read_text().strip() != "0"
    except OSError:
        return False


def plan_threads(requested: int | None = None) -> ThreadPlan:
    """``requested`` wins; then a user's own ``OMP_NUM_THREADS``; else the cores free right now (at least one)."""
    cores = usable_cores()
    if requested is not None:
        return ThreadPlan(requested, cores, 0, "--threads")
    from_env = os.environ.get("OMP_NUM_THREADS", "")
    ours = os.environ.get(APPLIED_ENV) == from_env  # set by a gpt2tui parent for itself, not by the user
    if from_env.isdigit() and int(from_env) > 0 and not ours:
        return ThreadPlan(int(from_env), cores, 0, "OMP_NUM_THREADS")
    busy = busy_cores(cores) if cores > 1 else 0
    return ThreadPlan(max(1, cores - busy), cores, busy, "free cores")


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Set the plan for this process: through the environment before torch loads, else through torch."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(plan.threads)
        return plan
    ours = os.environ.get(APPLIED_ENV)
    # The fast tokenizers' Rayon pool (packing a file) spins the same way; it reads this on first use. A
    # value a gpt2tui parent set for itself is replaced; the user's own is kept.
    if os.environ.get("RAYON_NUM_THREADS", ours) == ours:
        os.environ["RAYON_NUM_THREADS"] = str(plan.threads)
    os.environ["OMP_NUM_THREADS"] = os.environ[APPLIED_ENV] = str(plan.threads)
    if plan.busy and plan.threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return plan


def configure_threads(requested: int | None = None) -> ThreadPlan:
    """Choose and apply this process's thread count (call it before the first torch import)."""
    return apply_threads(plan_threads(requested))


SHARE_ENV = "GPT2TUI_SHARE_CORES"
"""``default``: processes generating side by side each keep the threads they planned alone (the off switch of
:func:`shared_threads`)."""


def shared_threads(plan: ThreadPlan, ways: int) -> int:
    """The threads of one of ``ways`` processes that compute at the same time with the cores of ``plan``.

    Two chat panes side by side are two processes, each of which planned its threads alone, when the other was
    idle: both take every free core, and their OpenMP teams then wait at each barrier for a thread the other
    team holds off its core. On 2 cores the two replies streamed at 22-39 tok/s each instead of 119-134 with
    one thread each (bench/split_chat.py). So each takes its share of the cores it planned (at least one).
    A count the user chose (``--threads``, ``OMP_NUM_THREADS``) is theirs to keep.
    """
    if plan.reason != "free cores" or switched_off(SHARE_ENV):
        return plan.threads
    return max(1, plan.threads // max(1, ways))


# ------------------------------------------------------------------------------------------ memory

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_FREED_BYTES = 1 << 30
"""Freed blocks up to this size stay in the heap for the next step instead of going back to the kernel."""
MALLOC_ENV = "GPT2TUI_MALLOC"
"""``default``: leave glibc's allocator as it is (the off switch of :func:`keep_freed_memory`)."""


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` asks for the library's own behaviour (``default``): the
    one spelling of the off switches of :func:`keep_freed_memory`, :func:`freeze_heap` and the growing
    key/value cache."""
    return os.environ.get(variable, "").strip().lower() == "default"


def keep_freed_memory() -> bool:
    """Let glibc reuse a step's freed activations instead of returning them to the kernel (True if it took).

    By default glibc serves large blocks with fresh ``mmap`` pages and trims the heap as soon as 128 KiB at
    its top are free, so every training step faults in, and the kernel zeroes, its activations again:
    measured 6,000 page faults a step on the tiny model and 100,000 on small (a fifth of the step's CPU time).
    A training process allocates the same shapes every step, so keeping them costs no more than its peak.

    Generation too: the key/value cache grows by one position a token, so each step's new cache tensors are
    a little larger than any block freed before, and glibc's adaptive threshold sent every one of them to
    ``mmap``: a fresh process (the chat's generator) streamed its first 4,000-token reply at 0.76x the speed
    of a process that had generated before, and at 1.05x with this (``bench/stream_chat.py``).
    Nothing changes numerically. Elsewhere (musl, macOS) this does nothing; ``GPT2TUI_MALLOC=default`` turns
    it off.
    """
    if switched_off(MALLOC_ENV) or not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    )


GC_ENV = "GPT2TUI_GC"
"""``default``: leave Python's cycle collector as it is (the off switch of :func:`freeze_heap`)."""


def freeze_heap(collect: bool = True) -> bool:
    """Take everything allocated so far (the libraries, a loaded model) out of the cycle collector's scans.

    Once torch, transformers and datasets are imported a process holds about 350,000 tracked objects, and
    each full collection walks them all: measured 180 ms with the GIL held, in the middle of a streamed
    reply (a UI stall, and CPU taken from the generating threads on 2 cores). These objects live as long as
    the process, so ``gc.freeze`` moves them to a generation that is never scanned; newer objects are
    collected as before, and reference counting still frees everything frozen that is dropped.

    ``collect`` first: garbage in reference cycles that is frozen would never be freed (a closed screen's
    widgets, when a later chat loads its model). The first collection of a process walks everything once;
    after a freeze a collection walks only what came since. ``GPT2TUI_GC=default`` turns this off. Returns
    whether it froze.
    """
    import gc

    if switched_off(GC_ENV):
        return False
    if collect:
        gc.collect()
    gc.freeze()
    return True


# --------------------------------------------------------------------------------------------- precision

BF16_MIN_WIDTH = 256
"""Hidden size below which bf16 autocast does not pay on a CPU, even a native one: measured on 2 AVX512_BF16
cores, width 64 and 128 trained at 0.96-0.97x fp32, width 256 at 1.4x, 384 at 1.6x."""
BF16_PROBE_GAIN = 1.5
"""When only the probe can tell, bf16 matmuls must be this much faster than fp32: a training step also pays
for the casts and the fp32 ops around the matmuls, so a smaller matmul gain can still lose overall."""
PROBE_SHAPE = (512, 768, 768)
"""(rows, inner, columns) of the probe matmul: a GPT-2 projection on 512 tokens, ~0.6 GFLOP (a few ms)."""
CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512_BF16"}
"""x86 flags (Linux ``/proc/cpuinfo``) of a CPU that computes bf16 natively, with the name shown for each."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in (accelerate's name) and why, for the run header."""

    precision: str  # "no" (fp32) | "bf16" | "fp16"
    reason: str  # e.g. "native AVX512_BF16", "no native bf16, AVX2", "requested"


def precision_name(precision: str) -> str:
    """accelerate calls fp32 "no"; people call it fp32."""
    return "fp32" if precision == "no" else precision


def cpu_flags(path: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU feature flags the kernel reports (x86 ``flags``, ARM ``Features``), or None where unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def native_bf16(flags: frozenset[str] | None, capability: str, onednn: bool) -> tuple[bool | None, str]:
    """Whether this CPU computes bf16 natively: True/False when the evidence is clear, None when unsure.

    ``capability`` is ``torch.backends.cpu.get_cpu_capability()``: torch's own kernels (layer norm, GELU,
    the casts) run at that level, so a native flag under an AVX2 torch is not trusted without a probe.
    """
    if not onednn:
        return False, "torch has no oneDNN"
    if flags is None:
        return None, "CPU flags unknown"
    native = [name for flag, name in NATIVE_BF16_FLAGS.items() if flag in flags]
    if not native:
        if "bf16" in flags:  # ARM's BF16 extension: real, but torch's kernels for it vary; measure
            return None, "ARM bf16"
        return False, f"no native bf16, {capability}"
    if not capability.startswith("AVX512"):
        return None, f"{native[0]} under torch {capability}"
    return True, f"native {native[0]}"


def bf16_probe_gain(repeats: int = 3) -> float:
    """fp32 time over bf16 time of one GPT-2-sized matmul (best of ``repeats`` each, interleaved)."""
    import torch

    rows, inner, columns = PROBE_SHAPE
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    operands = {
        dtype: (torch.randn(rows, inner, dtype=dtype), torch.randn(inner, columns, dtype=dtype))
        for dtype in best
    }
    for a, b in operands.values():
        torch.mm(a, b)  # first call: oneDNN picks and builds its kernel
    for _ in range(repeats):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            torch.mm(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def cpu_precision(
    width: int | None,
    flags: frozenset[str] | None,
    capability: str,
    onednn: bool,
    probe: Callable[[], float] | None = bf16_probe_gain,
) -> PrecisionChoice:
    """``auto`` on a CPU: bf16 where it is native and the model wide enough for it to pay, else fp32.

    ``probe`` None: unsure stays fp32 unmeasured (processes that must agree cannot each time their own probe).
    """
    native, why = native_bf16(flags, capability, onednn)
    if native is False:
        return PrecisionChoice("no", why)
    if width is not None and width < BF16_MIN_WIDTH:
        return PrecisionChoice("no", f"width {width} < {BF16_MIN_WIDTH}: bf16 would not pay")
    if native is None:
        if probe is None:
            return PrecisionChoice("no", f"{why}; not probed with several processes")
        gain = probe()
        if gain < BF16_PROBE_GAIN:
            return PrecisionChoice("no", f"{why}; bf16 matmul probe {gain:.1f}x fp32")
        return PrecisionChoice("bf16", f"{why}; bf16 matmul probe {gain:.1f}x fp32")
    return PrecisionChoice("bf16", why)


def choose_precision(requested: str, width: int | None = None) -> PrecisionChoice:
    """The precision to train in for ``--mixed-precision requested`` on this machine (``width``: the model's
    hidden size, when known); ``auto`` keeps bf16/fp16 on a GPU as before and applies :func:`cpu_precision`."""
    import torch

    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "GPU with bf16")
        return PrecisionChoice("fp16", "GPU without bf16")
    return cpu_precision(
        width,
        cpu_flags(),
        torch.backends.cpu.get_cpu_capability(),
        torch.backends.mkldnn.is_available(),
        bf16_probe_gain if os.environ.get("WORLD_SIZE", "1") == "1" else None,
    )


# ------------------------------------------------------------------------------------------- GPU levers


def compile_enabled(requested: str, cuda: bool) -> bool:
    """Whether ``--compile requested`` runs the model through ``torch.compile``: ``auto`` only on CUDA.

    On a CPU, inductor's compile (about 40 s for the tiny model on 2 cores, the first time) is not paid back in
    a short fine-tune, and it needs a C++ compiler the machine may not have; on a GPU its fused kernels
    repay the compile within the first steps of a GPT-2-sized model.
    """
    return requested == "on" or (requested == "auto" and cuda)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with (``CXX``, else g++/clang++/c++), or None."""
    import shutil

    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    return next((found for name in names if (found := shutil.which(name))), None)


def use_tf32(enabled: bool) -> bool:
    """On CUDA, fp32 matmuls in TF32 (``enabled``) or full fp32; True if TF32 is on. A CPU is left alone.

    Under bf16/fp16 autocast this changes only the matmuls autocast leaves in fp32. On a CPU the same setting
    can let oneDNN round fp32 matmuls, so it is not touched there.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    return enabled
