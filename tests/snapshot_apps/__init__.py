"""Fixed worlds for the snapshot tests and the README screenshots: the same pictures on every machine.

Everything a screen shows that could differ between machines or runs is fixed here: the stored model's
metadata (dates, perplexities), the run folders (a recorded ``events.jsonl``: thread count, precision, tok/s,
ETA and times are the log's, not this machine's), the time zone (dates are shown in local time), the working
directory (paths are shown relative to it) and the folder the dataset picker browses (its name is the tree's
root). A chat talks to :class:`ScriptedModel`, which streams a fixed reply at a fixed speed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from gpt2tui.core.card import DatasetRecord, FormattingRecord, ModelMetadata
from gpt2tui.core.compare import Cell
from gpt2tui.core.events import (
    CheckpointSaved,
    EvalFinished,
    RunFinished,
    RunStarted,
    StepLogged,
    TrainingEvent,
    event_to_dict,
)
from gpt2tui.core.generation import GenerationSettings, Reply

ROOT = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "files"
"""What the dataset picker browses: a folder of the repository, so the tree is the same in every clone."""
QA_CSV = ROOT / "sample_data" / "qa.csv"
KJV_TXT = ROOT / "sample_data" / "kjv_sample.txt"
ODD_CSV = "tests/snapshot_apps/files/odd.csv"
"""A CSV the core refuses (no text or question/answer columns), typed as a path relative to the repository."""

CONSOLE_WIDTH = 200
"""Wider than any picture, so a log line is wrapped by its panel's width alone."""
MODEL = "qa-tiny"
FINISHED_RUN = "20261120-101500-ab12"
LIVE_RUN = "20261120-113000-cd34"
TOTAL_STEPS = 200
SAMPLE_PROMPT = "What is at the center of our solar system?"
SAMPLES = {
    0: "rgeit oof eht tsia lanet",
    40: "The the the planet is the the Sun.",
    80: "The Sun is the planet of the solar system.",
    120: "The Sun sits at the center of the solar system.",
    160: "The Sun sits at the center of the solar system, and the planets orbit it.",
    200: "The Sun sits at the center of the solar system.",
}
EVAL_LOSSES = {0: 6.7218, 40: 5.3120, 80: 4.9015, 120: 4.8012, 160: 4.8644, 200: 4.9210}
REPLY = (
    "Jupiter is the largest planet in the solar system, more than twice as massive as all the other "
    "planets combined."
)
SECOND_MODEL = "qa-small"
SECOND_REPLY = "The largest planet is Jupiter, a gas giant."
GRID_REPLIES = {
    "greedy": "Jupiter is the largest planet.",
    "beam": "Jupiter is the largest planet in the solar system.",
    "top-k": "Jupiter, the gas giant, is largest.",
    "top-p": "The largest one is Jupiter, by far.",
    "top-p T=0.5": "Jupiter is the largest planet.",
    "top-p T=0.8": "Jupiter is the biggest planet of all.",
    "top-p T=1.2": "Saturn rings large jupiter sun planet of gas.",
}


# ------------------------------------------------------------------------------------------ the fixed world


def fix_environment(home: Path, monkeypatch: Any) -> None:
    """UTC dates, the repository as working directory, ``home`` as GPT2TUI_HOME (never shown on screen),
    colour whatever the machine's NO_COLOR says, and one console width: a RichLog measures what it writes
    against the app's console, whose width comes from COLUMNS or the terminal pytest runs in."""
    monkeypatch.setenv("GPT2TUI_HOME", str(home))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLUMNS", str(CONSOLE_WIDTH))
    monkeypatch.setenv("LINES", "50")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(ROOT)


def write_model(home: Path, name: str = MODEL) -> Path:
    """A stored model as the store lists it: a config, its metadata and a stand-in for its weights (nothing
    loads it)."""
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 256}))
    (folder / "model.safetensors").write_bytes(b"")
    metadata = ModelMetadata(
        name=name,
        created="2026-11-20T10:16:02+00:00",
        run=FINISHED_RUN,
        base="scratch",
        base_kind="scratch",
        scratch_size="tiny",
        dataset=DatasetRecord(path=str(QA_CSV), format="csv", rows=68),
        formatting=FormattingRecord(),
        steps=TOTAL_STEPS,
        stopped=False,
        perplexity_before=830.31,
        perplexity_after=137.14,
        eval_loss_before=6.7218,
        eval_loss_after=4.9210,
    )
    (folder / "gpt2tui.json").write_text(json.dumps(metadata.to_dict()))
    return folder


def run_events(until: int) -> list[TrainingEvent]:
    """A scratch-tiny run on qa.csv as its process records it, up to step ``until`` (finished at 200)."""
    events: list[TrainingEvent] = [
        RunStarted(
            MODEL,
            "scratch",
            "cpu",
            "no",
            TOTAL_STEPS,
            17,
            2,
            128,
            1024,
            168_896,
            threads=2,
            precision_reason="width 64 < 256: bf16 would not pay",
        ),
        EvalFinished(0, EVAL_LOSSES[0], 830.31, sample=SAMPLES[0], best_step=0, best_loss=EVAL_LOSSES[0]),
    ]
    best = 0
    for step in range(5, until + 1, 5):
        # a falling curve with a fixed wobble: the same picture on every machine
        loss = 1.2 + 5.4 * 0.985**step + 0.08 * ((step * 7) % 5 - 2) / 2
        events.append(
            StepLogged(
                step,
                TOTAL_STEPS,
                step / 17 * 1.0,
                round(loss, 4),
                3e-3 * (1 - step / TOTAL_STEPS),
                13_355.0,
                step * 0.08,
                (TOTAL_STEPS - step) * 0.08,
            )
        )
        if step in EVAL_LOSSES:
            if EVAL_LOSSES[step] < EVAL_LOSSES[best]:
                best = step
            loss = EVAL_LOSSES[step]
            events.append(
                EvalFinished(step, loss, round(2.718281828**loss, 2), SAMPLES[step], best, EVAL_LOSSES[best])
            )
        if step % 100 == 0:
            events.append(CheckpointSaved(step, f"runs/{FINISHED_RUN}/checkpoints/step-{step}"))
    if until >= TOTAL_STEPS:
        events.append(
            RunFinished(
                MODEL,
                f"~/.local/share/gpt2tui/models/{MODEL}",
                TOTAL_STEPS,
                False,
                EVAL_LOSSES[0],
                EVAL_LOSSES[200],
                830.31,
                137.14,
                204_800,
                13_355.0,
                16.2,
                best_step=best,
                best_eval_loss=EVAL_LOSSES[best],
            )
        )
    return events


def write_run(home: Path, run_id: str, events: list[TrainingEvent], **status: Any) -> Path:
    """A run folder as a run process leaves it; ``status`` overrides fields of its ``status.json``."""
    from gpt2tui.core.data import DataSpec
    from gpt2tui.core.training import TrainConfig

    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    config = TrainConfig(
        DataSpec(str(QA_CSV)), base="scratch", max_steps=TOTAL_STEPS, name=MODEL, sample_prompt=SAMPLE_PROMPT
    )
    (folder / "config.json").write_text(
        json.dumps({"schema_version": 1, "run": run_id, "train": config.to_dict(), "num_processes": 1})
    )
    lines = [
        json.dumps({"run": run_id, "seq": seq, "time": 1_795_169_700.0 + seq, **event_to_dict(event)})
        for seq, event in enumerate(events, start=1)
    ]
    (folder / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    steps = [e.step for e in events if isinstance(e, StepLogged)]
    losses = [e.loss for e in events if isinstance(e, EvalFinished)]
    record = {
        "run": run_id,
        "state": "finished",
        "step": steps[-1] if steps else 0,
        "total_steps": TOTAL_STEPS,
        "model": MODEL,
        "updated": "2026-11-20T10:16:02+00:00",
        "last_eval_loss": losses[-1] if losses else None,
        **status,
    }
    (folder / "status.json").write_text(json.dumps(record))
    return folder


def live_status() -> dict[str, Any]:
    """Fields that make a run read as live: this very process (it outlives the test)."""
    from gpt2tui.core.procs import hostname, start_time

    return {
        "state": "running",
        "pid": os.getpid(),
        "pid_started": start_time(os.getpid()),
        "hostname": hostname(),
        "updated": "2026-11-20T11:30:40+00:00",
    }


# ------------------------------------------------------------------------------------------ a scripted chat


class ScriptedModel:
    """Stands in for a loaded model in the chat screen: streams :data:`REPLY` word by word, at a fixed,
    recorded speed (so tok/s is the same everywhere), with a fixed seed.

    ``pause_after`` words, it waits for the reply's stop event (Escape): a reply caught mid-stream.
    """

    def __init__(self, name: str = MODEL, pause_after: int | None = None, text: str = REPLY) -> None:
        self.name = name
        self.text = text
        self.path = Path(name)
        self.context_length = 256
        self.metadata = ModelMetadata(name=name, base="scratch", base_kind="scratch", scratch_size="tiny")
        self.pause_after = pause_after
        self.streamed = threading.Event()  # set once the words before the pause are out

    def reply(
        self,
        mode: str,
        message: str,
        history: list[tuple[str, str]],
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        batch_seconds: float = 0.0,
    ) -> ScriptedStream:
        return ScriptedStream(self, stop or threading.Event())

    def cell(
        self, label: str, prompt: str, settings: GenerationSettings, stop: threading.Event | None = None
    ) -> ScriptedStream:
        """A cell of the decoding grid, as a model process streams it (its figures fixed too)."""
        return ScriptedStream(self, stop or threading.Event(), GRID_REPLIES[label], label, settings)


class ScriptedStream:
    def __init__(
        self,
        model: ScriptedModel,
        stop: threading.Event,
        text: str | None = None,
        label: str = "",
        settings: GenerationSettings | None = None,
    ) -> None:
        self.model = model
        self.stop = stop
        self.text = model.text if text is None else text
        self.reply = Reply(seed=1234)
        self.label = label
        self.settings = settings
        self.cell: Cell | None = None

    def __iter__(self) -> Iterator[str]:
        words = self.text.split(" ")
        sent: list[str] = []
        for index, word in enumerate(words):
            if index == self.model.pause_after:
                self.model.streamed.set()
                self.stop.wait(30)
            if self.stop.is_set():
                break
            chunk = (" " if index else "") + word
            sent.append(chunk)
            yield chunk
        self.model.streamed.set()
        self.reply.text = "".join(sent)
        self.reply.new_tokens = len(sent) * 2
        self.reply.seconds = self.reply.new_tokens / 250.0  # 250 tok/s, whatever this machine does
        self.reply.stopped = self.stop.is_set()
        if self.settings is not None:
            count = len(sent)
            self.cell = Cell(
                label=self.label,
                model=self.model.name,
                settings=self.settings.describe(),
                seed=0,
                text=self.reply.text,
                new_tokens=self.reply.new_tokens,
                seconds=self.reply.seconds,
                tokens_per_second=250.0,
                distinct_1=len({w.strip() for w in sent}) / count,
                distinct_2=1.0,
                repeated_4gram_rate=0.0,
                mean_token_logprob=None if self.label == "beam" else -1.25 - 0.1 * len(self.label),
                stopped=self.reply.stopped,
            )


# ------------------------------------------------------------------------------------------ waiting


async def wait_until(pilot: Pilot[Any], condition: Any, what: str, timeout: float = 90.0) -> None:
    """Let the app run until ``condition()`` holds (workers and the run watcher are threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    await pilot.pause()


def idle(app: App[Any]) -> bool:
    """No worker running but the folder tree's loader (which waits for folders to open as long as it lives)."""
    from textual.widgets import DirectoryTree

    return not any(worker.is_running and not isinstance(worker.node, DirectoryTree) for worker in app.workers)


def steady(app: App[Any]) -> None:
    """No blinking cursor in a text field, and the cursor at the end of its text with nothing selected: a
    picture taken mid-blink, or before or after a selection was replaced, would differ."""
    for field in app.screen.query(Input):
        field.cursor_blink = False
        field.cursor_position = len(field.value)
    for area in app.screen.query(TextArea):
        area.cursor_blink = False
        area.move_cursor(area.document.end)
