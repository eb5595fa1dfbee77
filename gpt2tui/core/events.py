"""Training progress as plain, frozen, JSON-serialisable dataclasses.

The CLI, the TUI and (later) a detached run's JSON-lines log all consume the same stream, so every event
round-trips through :func:`event_to_dict` / :func:`event_from_dict`.
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


@dataclass(frozen=True)
class EvalFinished:
    """Held-out loss at ``step`` (0 is before training); ``sample`` is a generation from a fixed prompt."""

    step: int
    loss: float
    perplexity: float
    sample: str | None = None


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


@dataclass(frozen=True)
class RunFailed:
    """The run ended with an error; nothing was stored."""

    message: str


TrainingEvent = RunStarted | StepLogged | EvalFinished | RunFinished | RunFailed
EventCallback = Callable[[TrainingEvent], None]

_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (RunStarted, StepLogged, EvalFinished, RunFinished, RunFailed)
}


def event_to_dict(event: TrainingEvent) -> dict[str, Any]:
    """A JSON-ready dict with the event's class name under ``"event"``."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_from_dict(data: dict[str, Any]) -> TrainingEvent:
    """Inverse of :func:`event_to_dict`; unknown keys are ignored so old readers survive new fields."""
    cls = _TYPES[data["event"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
