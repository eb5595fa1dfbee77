"""One CPU thread policy for training, generation and evaluation, chosen before torch is imported.

torch's OpenMP threads spin-wait at every barrier for the slowest thread. When another process keeps one of
the cores busy, the thread that shares that core falls behind and the others burn their time spinning: on a
2-core machine training drops to a third of its idle speed. So a process that owns its run picks its thread
count from the cores that are actually free when it starts (``--threads N`` overrides), and when it shares the
machine it lets waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``); OpenMP reads both only when torch loads
it. On an idle machine the waiting policy stays OpenMP's own: sleeping threads cost a tiny model about a
quarter of its speed (bench/busy_cpu.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

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
    """Cores of this process's affinity set that others keep busier than :data:`BUSY_PERCENT`."""
    import psutil

    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = list(range(cores))
    percents = psutil.cpu_percent(interval=seconds, percpu=True)
    return sum(1 for cpu in allowed if cpu < len(percents) and percents[cpu] > BUSY_PERCENT)


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
