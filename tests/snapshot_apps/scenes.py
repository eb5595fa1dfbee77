"""The states worth a picture, each as a world on disk plus the keys that reach it.

Shared by ``tests/test_snapshots.py`` (SVG snapshots at 80x24 and 120x40) and ``scripts/screenshots.py`` (the
README's pictures), so the README shows exactly what the tests check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from gpt2tui.core.generation import GenerationSettings
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.widgets.prompt_input import PromptInput
from tests.snapshot_apps import (
    FILES,
    FINISHED_RUN,
    LIVE_RUN,
    MODEL,
    ODD_CSV,
    SECOND_MODEL,
    SECOND_REPLY,
    ScriptedModel,
    idle,
    live_status,
    run_events,
    steady,
    wait_until,
    write_model,
    write_run,
)

Drive = Callable[[Pilot[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Scene:
    """``prepare`` writes the world into the data home; ``drive`` takes the app from home to the state."""

    name: str
    prepare: Callable[[Path], None]
    drive: Drive


def make_app() -> GPT2TUIApp:
    """The real app, browsing the fixed files folder, without the background import of torch."""
    return GPT2TUIApp(start_dir=FILES, warm_up=False)


def app_of(pilot: Pilot[Any]) -> GPT2TUIApp:
    app = pilot.app
    assert isinstance(app, GPT2TUIApp)
    return app


# ------------------------------------------------------------------------------------------ worlds


def empty(home: Path) -> None:
    """First start: nothing stored."""


def one_model(home: Path) -> None:
    """A model, the finished run that trained it, and a run still training."""
    write_model(home)
    write_run(home, FINISHED_RUN, run_events(until=200))
    write_run(home, LIVE_RUN, run_events(until=120), **live_status())


def finished_run(home: Path) -> None:
    write_model(home)
    write_run(home, FINISHED_RUN, run_events(until=200))


def live_run(home: Path) -> None:
    write_run(home, LIVE_RUN, run_events(until=120), **live_status())


# ------------------------------------------------------------------------------------------ drives


async def at_home(pilot: Pilot[Any]) -> None:
    app = app_of(pilot)
    await wait_until(pilot, lambda: app.screen.is_mounted, "the home screen")
    await pilot.pause(0.3)  # the run watcher's first poll


async def key_map(pilot: Pilot[Any]) -> None:
    """F1 over the home screen: the key map of its lists."""
    await at_home(pilot)
    await pilot.press("f1")
    await pilot.pause(0.2)


async def dataset_preview(pilot: Pilot[Any]) -> None:
    """n, then enter on the highlighted qa.csv: the core's summary of it."""
    app = app_of(pilot)
    await pilot.press("n")
    screen = app.screen
    await pilot.press("enter")
    await wait_until(pilot, lambda: getattr(screen, "summary", None) is not None, "the qa.csv preview")
    await wait_until(pilot, lambda: idle(app), "the preview's end")
    steady(app)


async def dataset_error(pilot: Pilot[Any]) -> None:
    """n, ctrl+l and the path of a CSV without usable columns: the core's sentence and the column choice."""
    app = app_of(pilot)
    await pilot.press("n", "ctrl+l")
    screen = app.screen
    screen.query_one("#path", Input).value = ODD_CSV
    await pilot.press("enter")
    await wait_until(pilot, lambda: screen.query_one("#columns").display, "the column choice")
    await wait_until(pilot, lambda: idle(app), "the preview's end")
    steady(app)


async def setup(pilot: Pilot[Any]) -> None:
    """The setup of a scratch-tiny fine-tune of qa.csv, reached through the picker."""
    await dataset_preview(pilot)
    app = app_of(pilot)
    await pilot.press("ctrl+n")
    await pilot.pause(0.2)
    await wait_until(pilot, lambda: idle(app), "the recount with the base's tokenizer")
    steady(app)


def open_monitor(run_id: str, events: int) -> Drive:
    async def drive(pilot: Pilot[Any]) -> None:
        """The run's monitor, once the watcher has handed it all ``events`` lines of the recorded log."""
        app = app_of(pilot)
        await at_home(pilot)
        app.open_run(run_id)
        await wait_until(pilot, lambda: getattr(app.screen, "last_seq", 0) >= events, "the run's history")
        await pilot.pause(0.2)

    return drive


def chat(pause_after: int | None, stop: bool) -> Drive:
    async def drive(pilot: Pilot[Any]) -> None:
        """A chat with a scripted model: one question, its reply caught mid-stream, stopped, or whole."""
        from gpt2tui.ui.screens.chat import ChatScreen

        app = app_of(pilot)
        model = ScriptedModel(pause_after=pause_after)
        settings = GenerationSettings(strategy="greedy", seed=1234)
        screen = ChatScreen(MODEL, settings, loaded=model)  # type: ignore[arg-type]
        await app.push_screen(screen)
        steady(app)
        prompt = screen.query_one("#prompt", PromptInput)
        await wait_until(pilot, lambda: screen.loaded is not None, "the model")
        prompt.value = "What is the largest planet?"
        await pilot.press("enter")
        await wait_until(pilot, model.streamed.is_set, "the reply's first words")
        await pilot.pause(0.3)  # the next flushes of the transcript
        if stop:
            await pilot.press("escape")
        if pause_after is None or stop:
            await wait_until(pilot, lambda: screen.active is None, "the end of the reply")
        steady(app)

    return drive


async def split_chat(pilot: Pilot[Any]) -> None:
    """Two scripted models side by side, both having answered the same question."""
    from gpt2tui.ui.screens.chat import ChatScreen

    app = app_of(pilot)
    settings = GenerationSettings(strategy="greedy", seed=1234)
    screen = ChatScreen(MODEL, settings, loaded=ScriptedModel())  # type: ignore[arg-type]
    await app.push_screen(screen)
    screen.add_pane(SECOND_MODEL, loaded=ScriptedModel(SECOND_MODEL, text=SECOND_REPLY))  # type: ignore[arg-type]
    await wait_until(pilot, lambda: all(p.loaded is not None for p in screen.panes), "both models")
    screen.query_one("#prompt", PromptInput).value = "What is the largest planet?"
    await pilot.press("enter")
    await wait_until(pilot, lambda: all(p.turns and p.turns[-1].reply for p in screen.panes), "both replies")
    steady(app)


async def decoding_grid(pilot: Pilot[Any]) -> None:
    """The grid of a scripted model, every cell done."""
    from gpt2tui.ui.screens.grid import GridScreen

    app = app_of(pilot)
    settings = GenerationSettings(max_new_tokens=40)
    grid = GridScreen(MODEL, "What is the largest planet?", settings, model=ScriptedModel())  # type: ignore[arg-type]
    await app.push_screen(grid)
    await wait_until(pilot, lambda: not grid.running and all(s.cell for s in grid.slots), "every cell")
    await pilot.pause(0.2)  # the last flush
    steady(app)


FINISHED_EVENTS = len(run_events(until=200))
LIVE_EVENTS = len(run_events(until=120))

SCENES = [
    Scene("home-first-start", empty, at_home),
    Scene("home", one_model, at_home),
    Scene("key-map", one_model, key_map),
    Scene("dataset", empty, dataset_preview),
    Scene("dataset-error", empty, dataset_error),
    Scene("setup", empty, setup),
    Scene("monitor-running", live_run, open_monitor(LIVE_RUN, LIVE_EVENTS)),
    Scene("monitor-finished", finished_run, open_monitor(FINISHED_RUN, FINISHED_EVENTS)),
    Scene("chat-streaming", empty, chat(pause_after=8, stop=False)),
    Scene("chat-stopped", empty, chat(pause_after=8, stop=True)),
    Scene("chat-split", empty, split_chat),
    Scene("grid", empty, decoding_grid),
]
