"""Typed model metadata (``gpt2tui.json``) and the human-readable model card (``README.md``).

Metadata is parsed once, here, and every reader (the store, the CLI, the home screen, generation) uses the
typed fields. A field of the wrong type never breaks the others: it reads as unknown, and ``problems`` says
which fields were dropped, so one hand-edited or damaged file cannot hide the good models.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
"""1: the untyped dict of gpt2tui 0.1 (no ``schema_version`` key); 2: this class."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRecord:
    """The file a model was trained on."""

    path: str | None = None
    format: str | None = None
    sha256: str | None = None
    rows: int | None = None
    tokens: int | None = None
    train_blocks: int | None = None
    eval_blocks: int | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class FormattingRecord:
    """How rows became text; generation applies the same template and stop texts."""

    kind: str | None = None
    columns: tuple[str, ...] = ()
    prompt_template: str | None = None
    stop_text: str | tuple[str, ...] | None = None


@dataclass(frozen=True)
class ModelMetadata:
    """Everything gpt2tui records about a stored model; every field may be unknown (``None``)."""

    name: str | None = None
    schema_version: int = SCHEMA_VERSION
    gpt2tui_version: str | None = None
    created: str | None = None  # ISO 8601 with a UTC offset
    run: str | None = None  # the run id that trained it
    base: str | None = None
    base_kind: str | None = None  # hub | local | scratch
    scratch_size: str | None = None
    dataset: DatasetRecord = field(default_factory=DatasetRecord)
    formatting: FormattingRecord = field(default_factory=FormattingRecord)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    block_size: int | None = None
    device: str | None = None
    step_limit: str | None = None  # "epochs" or "max_steps": which one ended the run's plan
    steps: int | None = None
    stopped: bool | None = None  # True when the user ended the run early
    weights_step: int | None = None  # the step whose weights are stored
    weights: str | None = None  # "last" step, or "best" held-out evaluation (--keep-best)
    best_step: int | None = None
    best_eval_loss: float | None = None
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    train_tokens: int | None = None
    tokens_per_second: float | None = None
    seconds: float | None = None
    problems: tuple[str, ...] = ()  # fields that were present but unusable (never written back)

    @property
    def created_at(self) -> datetime | None:
        """The creation time in local time, or None if missing, malformed or out of range."""
        if not self.created:
            return None
        try:
            return datetime.fromisoformat(self.created).astimezone()
        except (ValueError, OverflowError, OSError):
            return None

    @property
    def stop_texts(self) -> tuple[str, ...]:
        stop = self.formatting.stop_text
        if stop is None:
            return ()
        return (stop,) if isinstance(stop, str) else tuple(stop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``problems`` is a reading aid and is not stored."""
        data = dataclasses.asdict(self)
        del data["problems"]
        data["formatting"]["columns"] = list(self.formatting.columns)
        if isinstance(self.formatting.stop_text, tuple):
            data["formatting"]["stop_text"] = list(self.formatting.stop_text)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "gpt2tui.json") -> ModelMetadata:
        """Parse tolerantly: a field of the wrong type becomes unknown and is named in ``problems``."""
        if not isinstance(data, dict):
            return cls(problems=("the file is not a JSON object",)) if data is not None else cls()
        problems: list[str] = []
        values = _typed_fields(cls, data, problems, skip={"dataset", "formatting", "problems"})
        values["dataset"] = DatasetRecord(
            **_typed_fields(DatasetRecord, _section(data, "dataset", problems), problems, prefix="dataset.")
        )
        values["formatting"] = _formatting(_section(data, "formatting", problems), problems)
        if not isinstance(values.get("hyperparameters"), dict):
            values["hyperparameters"] = {}
        if problems:
            log.warning("%s: ignored unusable metadata fields: %s", source, ", ".join(problems))
        return cls(**values, problems=tuple(problems))


_SIMPLE = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _accepts(annotation: str, value: Any) -> bool:
    """Whether ``value`` fits a simple annotation such as ``int | None`` (bool is not an int here)."""
    kinds = [part.strip() for part in annotation.split("|")]
    if value is None:
        return "None" in kinds
    for kind in kinds:
        if kind.startswith("dict") and isinstance(value, dict):
            return True
        expected = _SIMPLE.get(kind)
        if expected is None or (isinstance(value, bool) and kind != "bool"):
            continue
        if isinstance(value, expected):
            return True
    return False


def _typed_fields(
    cls: type,
    data: dict[str, Any],
    problems: list[str],
    skip: set[str] = frozenset(),
    prefix: str = "",  # type: ignore[assignment]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name not in data:
            continue
        value = data[f.name]
        if _accepts(str(f.type), value):
            values[f.name] = float(value) if "float" in str(f.type) and isinstance(value, int) else value
        else:
            problems.append(f"{prefix}{f.name}")
    return values


def _section(data: dict[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(key)
        return {}
    return value


def _formatting(data: dict[str, Any], problems: list[str]) -> FormattingRecord:
    values = _typed_fields(
        FormattingRecord, data, problems, skip={"columns", "stop_text"}, prefix="formatting."
    )
    columns = data.get("columns", [])
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        values["columns"] = tuple(columns)
    else:
        problems.append("formatting.columns")
    stop = data.get("stop_text")
    if stop is None or isinstance(stop, str):
        values["stop_text"] = stop or None
    elif isinstance(stop, list) and stop and all(isinstance(s, str) and s for s in stop):
        values["stop_text"] = tuple(stop)
    else:
        problems.append("formatting.stop_text")
    template = values.get("prompt_template")
    if template is not None and not _valid_template(template):
        problems.append("formatting.prompt_template")
        values["prompt_template"] = None
    return FormattingRecord(**values)


def _valid_template(template: str) -> bool:
    """A prompt template must hold ``{prompt}`` exactly once and no other field."""
    import string

    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError:
        return False
    return fields == ["prompt"]


# ------------------------------------------------------------------------------------------------- the card


def _number(value: float | None, digits: int) -> str:
    return "unknown" if value is None else f"{value:.{digits}f}"


def model_card(meta: ModelMetadata) -> str:
    """A README.md in the Hub's model-card style; it names the model, so a rename rewrites it."""
    hp = meta.hyperparameters
    ds = meta.dataset
    rows = "\n".join(f"| {k} | {v} |" for k, v in hp.items())
    stopped = " (stopped early by the user)" if meta.stopped else ""
    planned = hp.get("planned_steps", "?")
    split = hp.get("eval_split")
    held_out = f"{split:.0%} of blocks" if isinstance(split, (int, float)) else "blocks"
    size = f", size {meta.scratch_size}" if meta.scratch_size else ""
    weights = (
        f"the best held-out evaluation (step {meta.weights_step})"
        if meta.weights == "best"
        else f"the last training step (step {meta.weights_step})"
    )
    limit = {"epochs": f"{hp.get('epochs')} epochs", "max_steps": f"{hp.get('max_steps')} steps"}.get(
        meta.step_limit or "", "unknown"
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
base_model: {meta.base if meta.base_kind == "hub" else "null"}
tags: [gpt2, gpt2tui]
---

# {meta.name or "gpt2tui model"}

GPT-2 fine-tuned with [gpt2tui](https://pypi.org/project/gpt2tui/) on {meta.created or "an unknown date"}.

- **Base:** {meta.base} ({meta.base_kind}{size})
- **Dataset:** `{Path(ds.path).name if ds.path else "unknown"}` ({ds.format}, {ds.rows} rows, {ds.tokens} tokens, sha256 `{ds.sha256}`)
- **Formatting:** {meta.formatting.kind}
- **Length:** planned as {limit}
- **Steps:** {meta.steps} of {planned}{stopped}, {meta.train_tokens} tokens on {meta.device}
- **Weights:** from {weights}

## Evaluation (held-out {held_out})

| | loss | perplexity |
|---|---|---|
| before | {_number(meta.eval_loss_before, 4)} | {_number(meta.perplexity_before, 2)} |
| after | {_number(meta.eval_loss_after, 4)} | {_number(meta.perplexity_after, 2)} |

## Hyperparameters

| name | value |
|---|---|
{rows}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```
"""
