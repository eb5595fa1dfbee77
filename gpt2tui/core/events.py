"""Training progress as plain, frozen, JSON-serialisable dataclasses.

The CLI, the TUI and a run's ``events.jsonl`` all consume the same stream, so every event round-trips
through :func:`event_to_dict` / :func:`event_from_dict`. New fields get defaults, so an older log still reads;
:func:`describe` is the one plain-text line per event (the CLI, ``runs attach`` and ``run.log`` print it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    """Everything is loaded and packed; training is about to begin."""

    name: str
    base: str
    device: str
    mixed_precision: str
    total_steps: int
    train_blocks: int
    eval_blocks: int
    block_size: int
    tokens_per_step: int
    parameters: int
    resumed_from: int = 0  # the checkpoint step this process started from (0: a fresh start)
    step_limit: str = "max_steps"  # "epochs" or "max_steps": which setting planned total_steps
    processes: int = 1  # training processes (GPUs) under accelerate
    threads: int = 0  # CPU threads each process computes with (0: not recorded)
    tokens_cached: bool = False  # the file's tokens were read from the cache (packed by an earlier run)
    pack_seconds: float = 0.0  # time spent tokenizing and packing in this run (0 when cached)
    precision_reason: str = ""  # why mixed_precision was chosen ("native AVX512_BF16", "requested", ...)
    compiled: bool = False  # the model runs through torch.compile (--compile)
    flops_per_token: float = 0.0  # training FLOPs per token (core/flops.py; 0: not recorded)
    peak_flops: float | None = None  # the device's matmul FLOP/s measured at the start (GPU only)


@dataclass(frozen=True)
class StepLogged:
    """One optimizer step (logged every ``log_every`` steps and on the last step)."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    tokens_per_second: float
    elapsed_seconds: float
    eta_seconds: float
    mfu: float | None = None  # model FLOPs utilisation against the matmul peak measured at the start (GPU)
    peak_memory_bytes: int | None = None  # the most GPU memory the run's tensors have held so far


@dataclass(frozen=True)
class EvalFinished:
    """Held-out loss at ``step`` (0 is before training); ``sample`` is a generation from a fixed prompt."""

    step: int
    loss: float
    perplexity: float
    sample: str | None = None
    best_step: int | None = None  # the step with the lowest held-out loss so far
    best_loss: float | None = None


@dataclass(frozen=True)
class EvalProgress:
    """Part of the held-out evaluation at ``step`` is done (a large eval set takes minutes).

    Sent at most every :data:`EVAL_PROGRESS_SECONDS` while an evaluation runs, and not at all for one that
    ends sooner, so ``events.jsonl`` gains a few lines a second at most. ``EvalFinished`` follows it.
    """

    step: int
    blocks_done: int
    blocks_total: int

    @property
    def fraction(self) -> float:
        return self.blocks_done / self.blocks_total if self.blocks_total > 0 else 0.0


@dataclass(frozen=True)
class CheckpointSaved:
    """Everything needed to resume exactly after ``step`` is on disk."""

    step: int
    path: str


@dataclass(frozen=True)
class RunStopping:
    """A stop was asked for (key, Ctrl+C, SIGTERM); a checkpoint and the model are saved next."""

    step: int


@dataclass(frozen=True)
class RunFinished:
    """The model is stored; ``stopped`` says whether the user ended the run early."""

    name: str
    path: str
    steps: int
    stopped: bool
    eval_loss_before: float
    eval_loss_after: float
    perplexity_before: float
    perplexity_after: float
    train_tokens: int
    tokens_per_second: float
    seconds: float
    weights: str = "last"  # "last" step or "best" held-out evaluation (--keep-best)
    weights_step: int | None = None
    best_step: int | None = None
    best_eval_loss: float | None = None


@dataclass(frozen=True)
class RunFailed:
    """The run ended with an error; nothing was stored."""

    message: str


TrainingEvent = (
    RunStarted
    | StepLogged
    | EvalProgress
    | EvalFinished
    | CheckpointSaved
    | RunStopping
    | RunFinished
    | RunFailed
)
EventCallback = Callable[[TrainingEvent], None]
END_EVENTS = (RunFinished, RunFailed)
PROGRESS_EVENTS = (EvalProgress,)
"""Transient: a screen redraws one line from them; plain logs (run.log, the CLI's lines) leave them out."""
EVAL_PROGRESS_SECONDS = 0.25
"""The least time between two ``EvalProgress`` events of one evaluation (at most 4 a second)."""

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        StepLogged,
        EvalProgress,
        EvalFinished,
        CheckpointSaved,
        RunStopping,
        RunFinished,
        RunFailed,
    )
}


def known_event(name: object) -> bool:
    """Whether this reader knows an event type (a newer writer's types are skipped, not fatal)."""
    return isinstance(name, str) and name in _TYPES


def event_to_dict(event: TrainingEvent) -> dict[str, Any]:
    """A JSON-ready dict with the event's class name under ``"event"``."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_from_dict(data: dict[str, Any]) -> TrainingEvent:
    """Inverse of :func:`event_to_dict`; unknown keys are ignored so old readers survive new fields."""
    cls = _TYPES[data["event"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def overfitting_since(evals: list[tuple[int, float]]) -> int | None:
    """The step after which held-out loss has risen at least twice in a row, else None.

    ``evals`` are ``(step, loss)`` in order; the answer is the step of the lowest loss before the rise.
    """
    if len(evals) < 3:
        return None
    start = len(evals) - 1
    while start > 0 and evals[start][1] > evals[start - 1][1]:
        start -= 1
    rises = len(evals) - 1 - start
    return evals[start][0] if rises >= 2 else None


def device_label(event: RunStarted) -> str:
    """Where and in what precision a run computes, e.g. ``"CPU, 2 threads, bf16 (native AVX512_BF16)"``,
    ending in ``", compiled"`` for a model run through torch.compile.

    The thread count and the reason appear only when the run recorded them (older logs did not).
    """
    cpu = event.device == "cpu"
    parts = ["CPU" if cpu else event.device]
    if cpu and event.threads:
        parts.append(f"{event.threads} thread{'s' if event.threads != 1 else ''}")
    precision = "fp32" if event.mixed_precision == "no" else event.mixed_precision
    parts.append(f"{precision} ({event.precision_reason})" if event.precision_reason else precision)
    if event.compiled:
        parts.append("compiled")
    return ", ".join(parts)


def gpu_figures(event: StepLogged, sep: str) -> str:
    """``" | MFU 47.3% | peak 21.4 GB"`` where the run measured them (on a GPU), else ""."""
    parts = []
    if event.mfu is not None:
        parts.append(f"MFU {event.mfu:.1%}")
    if event.peak_memory_bytes is not None:
        parts.append(f"peak {event.peak_memory_bytes / 1e9:.1f} GB")
    return "".join(sep + part for part in parts)


def eval_when(step: int) -> str:
    return "before training" if step == 0 else f"at step {step}"


def duration(seconds_float: float) -> str:
    seconds = max(0, round(seconds_float))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _packing(event: RunStarted) -> str:
    if event.tokens_cached:
        return "; tokens from the cache"
    return f"; tokenized and packed in {event.pack_seconds:.1f} s" if event.pack_seconds >= 0.05 else ""


def describe(event: TrainingEvent) -> str:
    """One plain line for a terminal or ``run.log`` (no colour, no progress bar)."""
    if isinstance(event, RunStarted):
        resumed = f", resumed from step {event.resumed_from}" if event.resumed_from else ""
        return (
            f"training {event.name}: {event.parameters:,} parameters on {device_label(event)}, "
            f"{event.total_steps} steps, {event.train_blocks} train / "
            f"{event.eval_blocks} eval blocks of {event.block_size} tokens{resumed}{_packing(event)}"
        )
    if isinstance(event, StepLogged):
        return (
            f"step {event.step}/{event.total_steps} | epoch {event.epoch:.2f} | loss {event.loss:.4f} | "
            f"lr {event.learning_rate:.2e} | {event.tokens_per_second:,.0f} tok/s{gpu_figures(event, ' | ')} | "
            f"ETA {duration(event.eta_seconds)}"
        )
    if isinstance(event, EvalProgress):
        return f"evaluating {eval_when(event.step)}: {event.blocks_done}/{event.blocks_total} blocks"
    if isinstance(event, EvalFinished):
        when = eval_when(event.step)
        best = (
            f" | best {event.best_loss:.4f} at step {event.best_step}" if event.best_loss is not None else ""
        )
        return f"eval {when}: loss {event.loss:.4f} | perplexity {event.perplexity:.2f}{best}"
    if isinstance(event, CheckpointSaved):
        return f"checkpoint saved at step {event.step}"
    if isinstance(event, RunStopping):
        return f"stopping at step {event.step}: saving a checkpoint and the model"
    if isinstance(event, RunFinished):
        verb = "stopped early; saved" if event.stopped else "saved"
        which = (
            f" (weights of the best evaluation, step {event.weights_step})" if event.weights == "best" else ""
        )
        return (
            f"{verb} {event.name} at {event.path}{which}: perplexity {event.perplexity_before:.2f} -> "
            f"{event.perplexity_after:.2f} in {duration(event.seconds)} ({event.tokens_per_second:,.0f} tok/s)"
        )
    return f"failed: {event.message}"
