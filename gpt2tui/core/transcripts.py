"""Chat transcripts: saved as Markdown a person reads, loaded back, and exported as training rows.

A transcript is the prompts of a chat and, per prompt, the reply of each model in it (one model, or two side by
side). The Markdown lists, under each reply, only what decided it: the strategy and the parameters that
strategy uses (no temperature for greedy, no seed for greedy or beam search, which draw nothing), the length
and the speed. The same file ends with the transcript as JSON in an HTML comment, which Markdown viewers hide,
so that :func:`read_transcript` gives back exactly what was saved, without parsing prose.

:func:`qa_rows` closes the loop from chat to fine-tuning: the chat-mode turns of one model as question/answer
rows, written by :func:`write_qa_jsonl` in the JSON Lines layout ``gpt2tui train`` reads.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gpt2tui.core.errors import UserError

DATA_MARK = "gpt2tui-transcript"
SCHEMA = 1
DATA_RE = re.compile(r"<!-- " + DATA_MARK + r" (\{.*\}) -->\s*\Z", re.DOTALL)
DASHES = "-\\u002d"  # "--" written so that JSON reads it back and HTML does not end the comment
LABELS = {
    "top_k": "top-k",
    "top_p": "top-p",
    "num_beams": "beams",
    "max_new_tokens": "max new tokens",
    "repetition_penalty": "repetition penalty",
}
"""Each recorded setting's name in a transcript (the CLI's option names, without the dashes)."""
SAMPLING = ("top-k", "top-p")
"""The strategies that draw tokens at random: only their replies depend on a seed."""


@dataclass
class SavedReply:
    """One model's reply to a prompt, with what decided it."""

    model: str
    text: str
    settings: dict[str, Any]  # GenerationSettings.to_record(): the strategy and only the parameters it uses
    seed: int | None = None  # None: no reply (failed), or a strategy that draws nothing
    new_tokens: int = 0
    tokens_per_second: float = 0.0
    stopped: bool = False
    error: str | None = None
    probabilities: list[tuple[str, float]] | None = None  # (token text, probability), when asked for

    def details(self) -> list[str]:
        """The reply's bullet lines: settings, seed only where one was used, length and speed."""
        lines = [f"{LABELS.get(key, key)}: {value}" for key, value in self.settings.items()]
        if self.seed is not None and self.settings.get("strategy") in SAMPLING:
            lines.append(f"seed: {self.seed}")
        if self.error:
            lines.append(f"failed: {self.error}")
        else:
            lines += [f"tokens: {self.new_tokens}", f"tokens/s: {self.tokens_per_second:.1f}"]
        if self.stopped:
            lines.append("stopped by the user (partial reply)")
        return lines


@dataclass
class SavedTurn:
    """A prompt, the mode it was sent in, and the replies to it (one per model that answered it)."""

    prompt: str
    mode: str  # "chat" or "raw"
    replies: list[SavedReply] = field(default_factory=list)


@dataclass
class Transcript:
    """Who was in the chat and what was said."""

    models: list[str]
    turns: list[SavedTurn]
    saved: str = ""  # ISO time of the save

    def to_markdown(self) -> str:
        """The Markdown file: readable, with the transcript as JSON in a trailing comment."""
        names = " vs ".join(self.models)
        lines = [f"# Chat with {names}", ""]
        lines += [
            f"- Model{'s' if len(self.models) > 1 else ''}: " + ", ".join(f"`{m}`" for m in self.models)
        ]
        if self.saved:
            lines.append(f"- Saved: {self.saved.replace('T', ' ')}")
        lines.append("")
        for number, turn in enumerate(self.turns, start=1):
            lines += [f"## {number}. {'Chat' if turn.mode == 'chat' else 'Raw completion'}", ""]
            lines += ["**You:**", "", quote(turn.prompt), ""]
            for reply in turn.replies:
                lines += [f"**{reply.model}:**", "", quote(reply.text.strip() or "(no text)"), ""]
                lines += [f"- {item}" for item in reply.details()]
                if reply.probabilities:
                    lines.append("- token probabilities: " + probability_line(reply.probabilities))
                lines.append("")
        # "--" cannot appear inside an HTML comment: a JSON escape keeps the comment one block.
        data = json.dumps({"schema": SCHEMA, **asdict(self)}, ensure_ascii=False).replace("--", DASHES)
        lines.append(f"<!-- {DATA_MARK} {data} -->")
        return "\n".join(lines) + "\n"


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def probability_line(tokens: list[tuple[str, float]]) -> str:
    """``tok`` 0.91 · ``en`` 0.12 ...: each token's text (in code spans, a newline shown as ↵) and probability."""
    return " · ".join(f"`{text.replace('`', 'ˋ').replace(chr(10), '↵')}` {p:.2f}" for text, p in tokens)


def save_transcript(transcript: Transcript, folder: Path, path: Path | None = None) -> Path:
    """Write ``transcript`` to ``path`` (saving the same chat again) or to a new file under ``folder`` named
    after its models and the time; returns the path written."""
    now = datetime.now().astimezone()
    transcript.saved = now.isoformat(timespec="seconds")
    if path is None:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", "-vs-".join(transcript.models))[:80] + f"-{now:%Y%m%d-%H%M%S}"
        path = folder / f"{stem}.md"
        counter = 1
        while path.exists():
            counter += 1
            path = folder / f"{stem}-{counter}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(transcript.to_markdown(), encoding="utf-8")
    tmp.replace(path)  # a save never leaves half a file where the last good one was
    return path


def is_transcript(path: Path) -> bool:
    """Whether ``path`` carries a transcript's data block (a saved decoding grid, also Markdown, does not)."""
    try:
        with path.open("rb") as file:
            return f"<!-- {DATA_MARK} ".encode() in file.read()
    except OSError:
        return False


def read_transcript(path: Path) -> Transcript:
    """A transcript saved by :func:`save_transcript`; a file that is not one says so in one sentence."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"Could not read the transcript {path}: {getattr(err, 'strerror', None) or err}."
        ) from err
    match = DATA_RE.search(text)
    if match is None:
        raise UserError(f"{path.name} is not a transcript saved by gpt2tui (its data block is missing).")
    try:
        data = json.loads(match.group(1))
        turns = [
            SavedTurn(
                prompt=str(turn["prompt"]),
                mode="raw" if turn.get("mode") == "raw" else "chat",
                replies=[_reply(reply) for reply in turn.get("replies", [])],
            )
            for turn in data["turns"]
        ]
        return Transcript(
            models=[str(m) for m in data["models"]], turns=turns, saved=str(data.get("saved", ""))
        )
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path.name} is not a transcript saved by gpt2tui (its data block is damaged)."
        ) from err


def _reply(data: dict[str, Any]) -> SavedReply:
    probabilities = data.get("probabilities")
    return SavedReply(
        model=str(data["model"]),
        text=str(data["text"]),
        settings=dict(data.get("settings") or {}),
        seed=data.get("seed"),
        new_tokens=int(data.get("new_tokens", 0)),
        tokens_per_second=float(data.get("tokens_per_second", 0.0)),
        stopped=bool(data.get("stopped", False)),
        error=data.get("error"),
        probabilities=[(str(t), float(p)) for t, p in probabilities] if probabilities else None,
    )


def qa_rows(transcript: Transcript, model: int = 0) -> list[dict[str, str]]:
    """The chat-mode turns that model ``model`` answered in full, as question/answer rows (raw completions,
    failed, stopped and empty replies are left out: they are not answers to train on)."""
    rows = []
    for turn in transcript.turns:
        if turn.mode != "chat" or model >= len(turn.replies):
            continue
        reply = turn.replies[model]
        answer = reply.text.strip()
        if answer and not reply.error and not reply.stopped:
            rows.append({"question": turn.prompt.strip(), "answer": answer})
    return rows


def write_qa_jsonl(rows: list[dict[str, str]], path: Path) -> Path:
    """The rows as JSON Lines (``{"question": ..., "answer": ...}`` per line), which ``gpt2tui train`` reads."""
    if not rows:
        raise UserError("There is nothing to export: no chat reply was answered in full yet.")
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(path)
    return path


def probability(logprob: float) -> float:
    return math.exp(logprob)
