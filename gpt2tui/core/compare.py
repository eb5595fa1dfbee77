"""Replies side by side: one prompt under several decoding settings (the grid), or to two models.

Every cell uses a fixed seed and its own random generator (``core.sampling``), so the grid is the same on every
run and a cell's reply does not depend on which cells ran before it. Each cell carries its own figures:
tokens/s, length, distinct-1/2 and repeated 4-grams of its tokens, and the mean log-probability of its tokens
under the model's own distribution, before temperature, top-k and top-p (not for beam search, which keeps no
single draw).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpt2tui.core.generation import GenerationSettings, LoadedModel

GRID_SEED = 0
GRID: tuple[tuple[str, dict[str, Any]], ...] = (
    ("greedy", {"strategy": "greedy"}),
    ("beam", {"strategy": "beam"}),
    ("top-k", {"strategy": "top-k"}),
    ("top-p", {"strategy": "top-p"}),
    ("top-p T=0.5", {"strategy": "top-p", "temperature": 0.5}),
    ("top-p T=0.8", {"strategy": "top-p", "temperature": 0.8}),
    ("top-p T=1.2", {"strategy": "top-p", "temperature": 1.2}),
)
"""The cells of the decoding grid: each strategy with the user's own parameters, then a temperature sweep."""


@dataclass(frozen=True)
class Cell:
    """One reply and its figures."""

    label: str
    model: str
    settings: str  # GenerationSettings.describe()
    seed: int
    text: str
    new_tokens: int
    seconds: float
    tokens_per_second: float
    distinct_1: float | None
    distinct_2: float | None
    repeated_4gram_rate: float | None
    mean_token_logprob: float | None
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reply_cell(
    label: str,
    loaded: LoadedModel,
    prompt: str,
    settings: GenerationSettings,
    stop: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    batch_seconds: float = 0.0,
) -> Cell:
    """Generate one reply (streamed to ``on_text`` when given, in chunks ``batch_seconds`` apart at most
    often) and measure it."""
    from gpt2tui.core.generation import stream
    from gpt2tui.core.metrics import distinct_n, mean_token_logprob, repeated_ngram_rate

    reply_stream = stream(
        loaded.model,
        loaded.tokenizer,
        prompt,
        settings,
        stop,
        template=loaded.template,
        stop_text=loaded.stop_text,
        batch_seconds=batch_seconds,
        prompt_cache=loaded.prompt_cache,
    )
    parts = []
    for chunk in reply_stream:
        parts.append(chunk)
        if on_text is not None:
            on_text(chunk)
    reply = reply_stream.reply
    text = "".join(parts)
    new_tokens = reply.new_tokens
    if (
        reply.tokens
    ):  # the tokens of the text shown (not those past its stop text), the model's log-probabilities
        new_tokens = reply.shown_tokens
        ids = [t for t, _ in reply.tokens[:new_tokens]]
        logprobs = reply.model_logprobs[:new_tokens]
    else:  # beam search: the reply's tokens, without probabilities
        ids, logprobs = loaded.tokenizer(text, add_special_tokens=False)["input_ids"], []
    return Cell(
        label=label,
        model=loaded.name,
        settings=settings.describe(),
        seed=reply.seed,
        text=text,
        new_tokens=new_tokens,
        seconds=reply.seconds,
        tokens_per_second=reply.tokens_per_second,
        distinct_1=distinct_n([ids], 1),
        distinct_2=distinct_n([ids], 2),
        repeated_4gram_rate=repeated_ngram_rate([ids]),
        mean_token_logprob=mean_token_logprob([logprobs]) if logprobs else None,
        stopped=reply.stopped,
    )


def grid_settings(base: GenerationSettings) -> list[tuple[str, GenerationSettings]]:
    """The grid's cells over ``base`` (its parameters, max tokens and seed; seed 0 when it has none)."""
    seed = base.seed if base.seed is not None else GRID_SEED
    return [(label, base.replace(seed=seed, **changes).validate()) for label, changes in GRID]


def decoding_grid(
    loaded: LoadedModel,
    prompt: str,
    base: GenerationSettings,
    on_cell: Callable[[Cell], None] | None = None,
    stop: threading.Event | None = None,
) -> list[Cell]:
    """Every cell of the grid in order; stops between cells (and mid-reply) when ``stop`` is set."""
    cells = []
    for label, settings in grid_settings(base):
        if stop is not None and stop.is_set():
            break
        cell = reply_cell(label, loaded, prompt, settings, stop)
        cells.append(cell)
        if on_cell is not None:
            on_cell(cell)
    return cells


def compare_models(
    first: LoadedModel, second: LoadedModel, prompt: str, settings: GenerationSettings
) -> list[Cell]:
    """The same prompt, settings and seed (0 when none is given) for two models, one after the other."""
    fixed = settings.replace(seed=settings.seed if settings.seed is not None else GRID_SEED).validate()
    return [reply_cell(label, loaded, prompt, fixed) for label, loaded in (("A", first), ("B", second))]


def cell_text(cell: Cell) -> str:
    """A header with the cell's figures, then its reply indented (as many lines as it has)."""
    logprob = f" · log-prob {cell.mean_token_logprob:.3f}" if cell.mean_token_logprob is not None else ""
    d2 = f"{cell.distinct_2:.2f}" if cell.distinct_2 is not None else "-"
    rep = f"{cell.repeated_4gram_rate:.2f}" if cell.repeated_4gram_rate is not None else "-"
    header = (
        f"── {cell.label} ({cell.model}) · {cell.settings} · seed {cell.seed} · {cell.new_tokens} tokens · "
        f"{cell.tokens_per_second:,.0f} tok/s · distinct-2 {d2} · repeated 4-grams {rep}{logprob}"
    )
    body = "\n".join(f"   {line}" for line in (cell.text.strip("\n") or "(empty reply)").splitlines())
    return f"{header}\n{body}\n"


def grid_markdown(prompt: str, cells: list[Cell]) -> str:
    """The grid as a Markdown file: the prompt, then each cell as the CLI prints it (a code block)."""
    quoted = "\n".join(f"> {line}" for line in prompt.splitlines())
    blocks = "\n".join(cell_text(cell) for cell in cells)
    model = cells[0].model if cells else ""
    return f"# Decoding grid: {model}\n\n{quoted}\n\n```text\n{blocks}```\n"
