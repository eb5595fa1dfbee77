"""Quitting never waits for work the app can abandon: the background import, a model loading, a reply.

Textual's thread workers run in asyncio's default executor, which ``asyncio.run`` joins on exit, so Ctrl+Q used
to wait seconds for ``import torch``. These tests hold each piece of work on an Event, quit, and check that the
app has exited while the work is still blocked, in a daemon thread (which the interpreter does not join either),
and that a reply being generated was told to stop. No timings: ``bench/quit_latency.py`` measures them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from gpt2tui.core import generation
from gpt2tui.core.generation import GenerationSettings, Reply
from gpt2tui.core.generator import IN_PROCESS_ENV
from gpt2tui.ui import app as app_module
from gpt2tui.ui import libraries
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.widgets.prompt_input import PromptInput

ROOT = Path(__file__).resolve().parent.parent
SIZE = (120, 40)
WAIT = 30.0  # an upper bound for a condition that is usually met at once; never a measured time


class Blocked:
    """Stands in for slow work: records that it started, then waits until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread: threading.Thread | None = None

    def wait(self) -> None:
        self.thread = threading.current_thread()
        self.entered.set()
        self.release.wait(WAIT)


@pytest.fixture
def blocked() -> Iterator[Blocked]:
    work = Blocked()
    yield work
    work.release.set()  # let the abandoned thread finish so it does not outlive the test session


async def wait_until(pilot: Any, event: threading.Event) -> None:
    for _ in range(int(WAIT / 0.02)):
        if event.is_set():
            return
        await pilot.pause(0.02)
    raise AssertionError("the work never started")


async def test_ctrl_q_during_the_warm_up_does_not_wait_for_the_import(
    blocked: Blocked, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_import() -> float:
        blocked.wait()
        return 0.0

    monkeypatch.setattr(libraries, "ensure_libraries", slow_import)
    monkeypatch.setattr(app_module, "WARM_UP_DELAY", 0.01)
    app = GPT2TUIApp(start_dir=ROOT)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, blocked.entered)
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    # The app has exited while the import is still blocked, and nothing will join its thread.
    assert not blocked.release.is_set() and blocked.thread is app.warm_up_thread
    assert blocked.thread is not None and blocked.thread.is_alive() and blocked.thread.daemon
    assert app.warm_up_seconds is None


class Host(App[None]):
    """A bare app under the chat screen (Textual's own ctrl+q quits it)."""

    def __init__(self, screen: ChatScreen) -> None:
        super().__init__()
        self.chat = screen

    def compose(self) -> ComposeResult:
        yield Static("home")

    def on_mount(self) -> None:
        self.push_screen(self.chat)


async def test_quitting_while_a_model_loads_does_not_wait_for_it(
    blocked: Blocked, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow_load(ref: str) -> Any:
        blocked.wait()
        raise AssertionError("never reached in this test")

    monkeypatch.setenv(IN_PROCESS_ENV, "1")  # loaded in this process, by the slow loader above
    monkeypatch.setattr(libraries, "ensure_libraries", lambda: 0.0)
    monkeypatch.setattr(generation, "load", slow_load)
    app = Host(ChatScreen("tiny"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, blocked.entered)
        await pilot.press("ctrl+q")
    assert not blocked.release.is_set()
    assert blocked.thread is not None and blocked.thread.is_alive() and blocked.thread.daemon


async def test_quitting_while_the_model_process_starts_ends_it(tiny_model: str) -> None:
    """The default chat loads its model in a child process: quitting does not wait for it, and ends it."""
    screen = ChatScreen(tiny_model)
    app = Host(screen)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(int(WAIT / 0.02)):
            if screen.pane.process is not None:
                break
            await pilot.pause(0.02)
        child = screen.pane.process
        assert child is not None and child._process.poll() is None  # started, not loaded yet
        await pilot.press("ctrl+q")
    assert app.return_code == 0 and screen.loaded is None
    child._process.wait(WAIT)  # ended by the app's exit (the screen's unmount, or the end of its input)


class HeldStream:
    """``core.generation.stream`` replaced by a reply that yields one chunk, then blocks until released."""

    def __init__(self, work: Blocked) -> None:
        self.work = work
        self.stop: threading.Event | None = None

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        **kwargs: Any,
    ) -> Any:
        self.stop = stop
        held = self

        class Stream:
            reply = Reply()

            def __iter__(self) -> Iterator[str]:
                yield "partial "
                held.work.wait()

        return Stream()


async def test_quitting_while_a_reply_streams_stops_it_and_does_not_wait(
    blocked: Blocked, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldStream(blocked)
    monkeypatch.setattr(generation, "stream", held)
    loaded = generation.LoadedModel("fake", ROOT, None, None, None)  # type: ignore[arg-type]
    monkeypatch.setattr(generation.LoadedModel, "context_length", property(lambda self: 1024))
    screen = ChatScreen("fake", GenerationSettings(strategy="greedy"), loaded=loaded, mode="raw")
    app = Host(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen.query_one("#prompt", PromptInput).value = "hello"
        await pilot.press("enter")
        await wait_until(pilot, blocked.entered)
        await pilot.press("ctrl+q")
    assert held.stop is not None and held.stop.is_set()  # the core was told to stop at its next token
    assert not blocked.release.is_set()
    assert blocked.thread is not None and blocked.thread.is_alive() and blocked.thread.daemon
