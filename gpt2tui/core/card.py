"""Typed model metadata (``gpt2tui.json``) and the human-readable model card (``README.md``).

Metadata is parsed once, here, and every reader (the store, the CLI, the home screen, generation) uses the
typed fields. A field of the wrong type never breaks the others: it reads as unknown, and ``problems`` says
which fields were dropped, so one hand-edited or damaged file cannot hide the good models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 3
"""1: the untyped dict of gpt2tui 0.1 (no ``schema_version`` key); 2: this class; 3: adds ``evaluations``
(files of version 2 read as having none)."""

MAX_EVALUATIONS = 20
"""Evaluations kept per model, newest last: repeating the same measurement replaces it, so this bounds
only genuinely different ones."""

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
class EvaluationRecord:
    """One evaluation of the model, stored with it: the figures, the file they were measured on, and how.

    Loss and perplexity are over every block of the file; the generation figures (``replies`` onwards, defined
    in ``gpt2tui.core.metrics``) are present only when replies were generated and scored.
    """

    created: str | None = None  # ISO 8601 with a UTC offset
    dataset: str | None = None  # the file's name, as shown and as the model card's dataset
    dataset_path: str | None = None
    dataset_sha256: str | None = None
    block_size: int | None = None
    blocks: int | None = None
    tokens: int | None = None
    loss: float | None = None
    perplexity: float | None = None
    seed: int | None = None
    decoding: dict[str, Any] = field(default_factory=dict)  # the generation settings; empty: none generated
    replies: int | None = None
    references: int | None = None
    distinct_1: float | None = None
    distinct_2: float | None = None
    repeated_4gram_rate: float | None = None
    mean_reply_tokens: float | None = None
    mean_token_logprob: float | None = None
    reply_perplexity: float | None = None
    rouge_l: float | None = None
    token_f1: float | None = None

    def same_measurement(self, other: EvaluationRecord) -> bool:
        """Whether ``other`` measured the same thing (same bytes, blocks, decoding, seed and sample size), so
        the newer one replaces it instead of piling up."""
        return (
            self.dataset_sha256,
            self.block_size,
            self.decoding,
            self.seed,
            self.replies,
        ) == (other.dataset_sha256, other.block_size, other.decoding, other.seed, other.replies)


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
    evaluations: tuple[EvaluationRecord, ...] = ()  # oldest first, at most MAX_EVALUATIONS
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
        data["evaluations"] = list(data["evaluations"])
        return data

    def with_evaluation(self, record: EvaluationRecord) -> ModelMetadata:
        """These metadata with ``record`` added last (replacing the same measurement), at the current schema."""
        kept = [old for old in self.evaluations if not old.same_measurement(record)]
        return dataclasses.replace(
            self,
            schema_version=max(self.schema_version, SCHEMA_VERSION),
            evaluations=(*kept, record)[-MAX_EVALUATIONS:],
        )

    @classmethod
    def from_dict(cls, data: Any, source: str = "gpt2tui.json") -> ModelMetadata:
        """Parse tolerantly: a field of the wrong type becomes unknown and is named in ``problems``."""
        if not isinstance(data, dict):
            return cls(problems=("the file is not a JSON object",)) if data is not None else cls()
        problems: list[str] = []
        values = _typed_fields(cls, data, problems, skip={"dataset", "formatting", "evaluations", "problems"})
        values["dataset"] = DatasetRecord(
            **_typed_fields(DatasetRecord, _section(data, "dataset", problems), problems, prefix="dataset.")
        )
        values["formatting"] = _formatting(_section(data, "formatting", problems), problems)
        values["evaluations"] = _evaluations(data.get("evaluations"), problems)
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


def _evaluations(data: Any, problems: list[str]) -> tuple[EvaluationRecord, ...]:
    """Each record parsed on its own: a damaged one is dropped (and named), the others stay."""
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.append("evaluations")
        return ()
    records = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(f"evaluations[{index}]")
            continue
        records.append(
            EvaluationRecord(
                **_typed_fields(EvaluationRecord, item, problems, prefix=f"evaluations[{index}].")
            )
        )
    return tuple(records)


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


INDEX_METRICS: tuple[tuple[str, str, str], ...] = (
    # (EvaluationRecord field, model-index metric type, its pretty name)
    ("perplexity", "perplexity", "Perplexity"),
    ("distinct_1", "distinct-1", "Distinct-1"),
    ("distinct_2", "distinct-2", "Distinct-2"),
    ("repeated_4gram_rate", "repeated-4gram-rate", "Repeated 4-gram rate"),
    ("mean_reply_tokens", "mean-reply-tokens", "Mean reply length (tokens)"),
    ("mean_token_logprob", "mean-token-logprob", "Mean token log-probability"),
    ("reply_perplexity", "reply-perplexity", "Reply perplexity"),
    ("rouge_l", "rouge", "ROUGE-L"),
    ("token_f1", "f1", "Token F1"),
)
"""What the card's ``model-index`` reports of each evaluation (types from the Hub's metric ids where one
exists: perplexity, rouge, f1)."""


def _scalar(value: Any) -> str:
    """A YAML scalar: JSON's spelling is valid YAML, and quoting every string keeps odd names safe."""
    return json.dumps(value, ensure_ascii=False)


def _index_result(dataset: str, name: str, metrics: list[tuple[str, str, float]]) -> str:
    """One result: a local file has no Hub dataset id, so its file name stands for one."""
    lines = [
        "  - task:",
        "      type: text-generation",
        "      name: Text Generation",
        "    dataset:",
        f"      name: {_scalar(name)}",
        f"      type: {_scalar(dataset)}",
        "    metrics:",
    ]
    for kind, name, value in metrics:
        lines += [
            f"      - type: {_scalar(kind)}",
            f"        value: {_scalar(value)}",
            f"        name: {_scalar(name)}",
        ]
    return "\n".join(lines)


def model_index(meta: ModelMetadata) -> str:
    """The card's ``model-index`` (the Hub's model-card spec): the held-out perplexity after training, then
    each stored evaluation; empty when no figure is known. Unknown and non-finite figures are left out."""

    def finite(value: float | None) -> bool:
        return value is not None and math.isfinite(value)

    results = []
    if finite(meta.perplexity_after) and meta.dataset.path:
        file = Path(meta.dataset.path).name
        results.append(
            _index_result(
                file,
                f"{file} (held-out blocks)",
                [("perplexity", "Held-out perplexity after fine-tuning", meta.perplexity_after)],  # type: ignore[list-item]
            )
        )
    for record in meta.evaluations:
        metrics = [
            (kind, name, getattr(record, attr))
            for attr, kind, name in INDEX_METRICS
            if finite(getattr(record, attr))
        ]
        if metrics:
            dataset = record.dataset or "unknown"
            results.append(_index_result(dataset, f"{dataset} (every block)", metrics))
    if not results:
        return ""
    return (
        f"model-index:\n- name: {_scalar(meta.name or 'gpt2tui model')}\n  results:\n"
        + "\n".join(results)
        + "\n"
    )


def _evaluations_section(meta: ModelMetadata) -> str:
    """A Markdown table of the stored evaluations, newest last, with only the figures some evaluation has;
    empty when there is none."""
    if not meta.evaluations:
        return ""
    shown = [m for m in INDEX_METRICS if any(getattr(r, m[0]) is not None for r in meta.evaluations)]
    digits = {"perplexity": 2, "reply_perplexity": 2, "mean_reply_tokens": 1}
    rows = []
    for r in meta.evaluations:
        cells = [
            (r.created or "unknown")[:16].replace("T", " "),
            f"`{r.dataset or 'unknown'}`",
            f"{r.blocks} x {r.block_size}",
            _number(r.loss, 4),
            *(_number(getattr(r, attr), digits.get(attr, 4)) for attr, _, _ in shown),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    header = ["date (UTC)", "file", "blocks x tokens", "loss", *(name for _, _, name in shown)]
    return (
        "## Evaluations (gpt2tui eval, every block of the file)\n\n"
        + "| "
        + " | ".join(header)
        + " |\n"
        + "|"
        + "---|" * len(header)
        + "\n"
        + "\n".join(rows)
        + "\n\n"
    )


def stopped_note(meta: ModelMetadata) -> str | None:
    """``stopped early at step 120 of 200`` when the user ended the run before its plan, else None (the home
    screen, the chat and ``gpt2tui models list`` say it)."""
    if not meta.stopped:
        return None
    planned = meta.hyperparameters.get("planned_steps")
    at = f" at step {meta.steps:,}" if isinstance(meta.steps, int) else ""
    of = f" of {planned:,}" if at and isinstance(planned, int) else ""
    return f"stopped early{at}{of}"


def model_card(meta: ModelMetadata) -> str:
    """A README.md in the Hub's model-card style; it names the model, so a rename rewrites it.

    A file name that is not UTF-8 (Linux names are bytes; Python holds the odd ones as lone surrogates) shows
    as U+FFFD here: the card is UTF-8 text, and writing it once failed a whole finished run at its save."""
    from gpt2tui.core.visible import readable

    return readable(_card_text(meta))


def _card_text(meta: ModelMetadata) -> str:
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
{model_index(meta)}---

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

{_evaluations_section(meta)}## Hyperparameters

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
