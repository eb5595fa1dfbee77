"""The chat screen: streaming, decoding keys, stop, regenerate, clear, save, leaving, scrolling, beam, modes,
errors, and what fits at 80 columns.

The session's tiny model (conftest ``trained_tiny``: scratch tiny, 30 steps) is loaded once; most tests inject
it and replace ``core.generation.stream`` with a fake so they are fast and deterministic; a few stream real
replies through the core end to end and one loads the model from the store through the screen's worker.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from gpt2tui.core import generation
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, LoadedModel, Reply
from gpt2tui.core.generator import IN_PROCESS_ENV, GeneratorProcess
from gpt2tui.ui.screens import chat as chat_module
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
from gpt2tui.ui.widgets.prompt_input import PromptInput
from gpt2tui.ui.widgets.status_line import StatusLine
from gpt2tui.ui.widgets.transcript import Transcript
from tests.screen_text import screen_rows

ROOT = Path(__file__).resolve().parents[1]
SIZE = (120, 40)
SMALLEST = (80, 24)  # the smallest terminal the README promises


# ---- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny(trained_tiny: Path) -> LoadedModel:
    """The session's tiny model (conftest) loaded once; generation only reads it, so tests can share it."""
    return generation.load(str(trained_tiny))


@dataclass
class StreamCall:
    prompt: str
    settings: GenerationSettings
    template: str | None
    stop_text: str | None


class FakeStream:
    """Stands in for ``core.generation.stream``: records each call, yields ``word{n} `` chunks.

    ``delay`` paces the chunks (a slow model); ``gate`` holds generation until set; ``hold`` holds it after
    ``hold_after`` chunks until set (a reply caught midway); beam yields once at the end, like the core; the
    stop event ends it with ``reply.stopped`` True, like the core.
    """

    def __init__(self) -> None:
        self.calls: list[StreamCall] = []
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.hold: threading.Event | None = None
        self.hold_after = 0
        self.error: Exception | None = None

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        *,
        template: str | None = None,
        stop_text: str | None = None,
        batch_seconds: float = 0.0,
        prompt_cache: Any = None,
    ) -> _FakeReplyStream:
        self.calls.append(StreamCall(prompt, settings, template, stop_text))
        return _FakeReplyStream(self, len(self.calls), settings, stop or threading.Event())


class _FakeReplyStream:
    def __init__(self, owner: FakeStream, number: int, settings: GenerationSettings, stop: threading.Event):
        self.owner, self.number, self.settings, self.stop = owner, number, settings, stop
        self.reply = Reply(seed=settings.seed if settings.seed is not None else 1234)

    def __iter__(self) -> Iterator[str]:
        started = time.perf_counter()
        if self.owner.gate is not None:
            self.owner.gate.wait(10)
        if self.owner.error is not None:
            raise self.owner.error
        text, tokens = "", 0
        for tokens in range(1, self.settings.max_new_tokens + 1):
            if self.stop.is_set():
                tokens -= 1
                break
            if self.owner.delay:
                time.sleep(self.owner.delay)
            if self.owner.hold is not None and tokens == self.owner.hold_after + 1:
                self.owner.hold.wait(10)
            chunk = f"r{self.number}w{tokens} "
            text += chunk
            if self.settings.strategy != "beam":
                yield chunk
        if self.settings.strategy == "beam":
            yield text
        self.reply.text = text
        self.reply.new_tokens = tokens
        self.reply.seconds = max(time.perf_counter() - started, 1e-3)
        self.reply.stopped = self.stop.is_set()


@pytest.fixture
def fake_stream(monkeypatch: pytest.MonkeyPatch) -> FakeStream:
    """The fake replaces the core's stream in this process: a model loaded from the store is loaded here too."""
    fake = FakeStream()
    monkeypatch.setattr(generation, "stream", fake)
    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    return fake


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Escape may leave at once after a reply (tests press it within the stop grace period otherwise)."""
    monkeypatch.setattr(chat_module, "STOP_GRACE_SECONDS", 0.0)


class ChatTestApp(App[None]):
    """A bare app that pushes the chat screen over a placeholder, like the real app does."""

    def __init__(self, screen: ChatScreen) -> None:
        super().__init__()
        self.chat = screen
        self.notes: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static("home")

    def on_mount(self) -> None:
        self.push_screen(self.chat)

    def notify(self, message: str, *, severity: str = "information", **kwargs: Any) -> None:  # type: ignore[override]
        self.notes.append((severity, message))
        super().notify(message, severity=severity, **kwargs)  # type: ignore[arg-type]


async def until(pilot: Any, condition: Any, timeout: float = 10.0, *, settle: bool = True) -> None:
    """Let the app run until ``condition()`` holds (workers are threads, so poll).

    ``settle`` then waits for the app to go idle, which takes up to a second while a real model generates.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
    if settle:
        await pilot.pause()


async def send(pilot: Any, screen: ChatScreen, text: str) -> None:
    """Type a prompt, press Enter and wait for the whole reply."""
    prompt = screen.query_one("#prompt", PromptInput)
    prompt.value = text
    await pilot.press("enter")
    await until(pilot, lambda: screen.active is None and bool(screen.turns) and screen.turns[-1].text != "")


def reply_text(screen: ChatScreen) -> str:
    """The last reply entry as shown in the transcript."""
    return screen.transcript.entry_text(screen.turns[-1].reply_entry)


def screen_lines(app: App[Any]) -> list[str]:
    """The terminal as the user sees it, one string per row (``tests/screen_text.py``: public API only)."""
    return screen_rows(app)


def spy_model_input(
    loaded: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    *,
    no_early_end: bool = False,
    token_seconds: float = 0,
) -> list[str]:
    """Record the decoded input of every ``model.generate`` call: the prompt the model really sees.

    ``no_early_end`` passes ``min_new_tokens`` equal to ``max_new_tokens``, so the model cannot end the reply
    with end-of-text: only the stop event (or the limit) ends it. ``token_seconds`` makes it a slow model (a
    sleep per token), so that the test's key presses, which wait for the process to be idle, get through
    while it generates.
    """
    import torch

    seen: list[str] = []
    real_generate = loaded.model.generate

    def slow(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        time.sleep(token_seconds)
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)

    def generate(input_ids: Any, **kwargs: Any) -> Any:
        seen.append(loaded.tokenizer.decode(input_ids[0]))
        if no_early_end:
            kwargs["min_new_tokens"] = kwargs["max_new_tokens"]
        if token_seconds:
            kwargs["stopping_criteria"].append(slow)
        return real_generate(input_ids, **kwargs)

    monkeypatch.setattr(loaded.model, "generate", generate)
    return seen


# ---- streaming through the real core ----------------------------------------------------------------


async def test_real_model_streams_reply_equal_to_complete(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list[str] = []
    real_stream = generation.stream

    class CountingStream:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.inner = real_stream(*args, **kwargs)

        def __iter__(self) -> Iterator[str]:
            for chunk in self.inner:
                chunks.append(chunk)
                yield chunk

        @property
        def reply(self) -> Reply:
            return self.inner.reply

    monkeypatch.setattr(generation, "stream", CountingStream)
    settings = GenerationSettings(strategy="greedy", seed=1, max_new_tokens=40)
    screen = ChatScreen("tiny", settings, loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "hello")
        prompt = generation.chat_prompt([], "hello", tiny, 40)
        expected = generation.complete(tiny.model, tiny.tokenizer, prompt, settings, stop_text=tiny.stop_text)
        assert len(chunks) > 1
        assert screen.turns[-1].text == expected
        assert reply_text(screen) == f"{tiny.name} ▸ {expected.lstrip()}"
        assert "– tok/s" not in screen.status.plain
        assert "tok/s" in screen.status.plain


async def test_escape_stops_a_long_real_reply(tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    spy_model_input(tiny, monkeypatch, no_early_end=True, token_seconds=0.01)
    screen = ChatScreen("tiny", GenerationSettings(strategy="greedy", seed=1), loaded=tiny, mode="raw")
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f9", "f9")
        requested = screen.settings.max_new_tokens
        assert requested == tiny.context_length
        screen.query_one("#prompt", PromptInput).value = "Once upon a time"
        # simulate_key, not pilot.press: press waits for the process to go idle, i.e. for the reply to end
        app.simulate_key("enter")
        await until(pilot, lambda: screen.active is not None, settle=False)  # the reply has started
        app.simulate_key("escape")
        await until(pilot, lambda: screen.active is None, timeout=30)
        reply = screen.turns[-1].reply
        assert reply is not None and reply.stopped
        assert reply.new_tokens < requested // 2  # stopped early, far from the limit
        assert reply_text(screen).endswith(" [stopped]")
        assert "stopped" in screen.status.plain
        assert app.screen is screen


async def test_question_still_reaches_the_model_with_max_new_tokens_at_the_context_length(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F9 up to the context length must not squeeze the question out of the prompt (the core keeps room)."""
    prompts: list[str] = []
    real_stream = generation.stream

    def stream(model: Any, tokenizer: Any, prompt: str, *args: Any, **kwargs: Any) -> Any:
        prompts.append(prompt)
        return real_stream(model, tokenizer, prompt, *args, **kwargs)

    monkeypatch.setattr(generation, "stream", stream)
    seen = spy_model_input(tiny, monkeypatch)
    screen = ChatScreen("tiny", GenerationSettings(strategy="greedy", seed=1, max_new_tokens=8), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "Where is Mars?")
        await pilot.press("f9", "f9", "f9", "f9", "f9", "f9")  # 8: 10, 20, 50, 100, 200, the context
        assert screen.settings.max_new_tokens == tiny.context_length
        question = "What is the largest planet?"
        screen.query_one("#prompt", PromptInput).value = question
        await pilot.press("enter")
        await until(pilot, lambda: screen.active is None and len(screen.turns) == 2, timeout=30)
        assert question in prompts[-1]
        assert question in seen[-1]  # what the model was given, after the core fitted it to the context


async def test_loads_model_from_store_in_a_worker(tiny_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With GPT2TUI_CHAT_IN_PROCESS=1 the model is loaded in this process, by a worker thread."""
    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    gate = threading.Event()
    real_load = generation.load

    def slow_load(ref: str) -> LoadedModel:
        gate.wait(10)
        return real_load(ref)

    monkeypatch.setattr(generation, "load", slow_load)
    screen = ChatScreen(tiny_model)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = screen.query_one("#prompt", PromptInput)
        assert not prompt.disabled and prompt.placeholder == chat_module.LOADING_PLACEHOLDER  # takes typing
        assert screen.transcript.loading and "loading…" in screen.status.plain
        gate.set()
        await until(pilot, lambda: screen.loaded is not None, timeout=30)
        assert not screen.transcript.loading
        assert not prompt.disabled and str(prompt.placeholder).startswith("Ask tiny (Enter sends")
        assert screen.status.plain.startswith("tiny · chat mode · top-p T=0.80 p=0.95 max=100")


async def test_loads_model_from_store_in_a_child_process_and_ends_it_on_leaving(tiny_model: str) -> None:
    """The default: the model lives in a child process; a real reply streams from it; leaving ends it."""
    screen = ChatScreen(tiny_model, GenerationSettings(strategy="greedy", seed=1, max_new_tokens=12))
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "loading…" in screen.status.plain
        await until(pilot, lambda: screen.loaded is not None, timeout=60)
        child = screen.loaded
        assert isinstance(child, GeneratorProcess) and child.name == "tiny"
        await pilot.press("ctrl+t")  # raw: the model continues the text
        await send(pilot, screen, "The Sun")
        turn = screen.turns[-1]
        assert turn.reply is not None and turn.reply.new_tokens > 0 and turn.reply.seed == 1
        assert reply_text(screen) == f"tiny ▸ {turn.text.lstrip()}"
        assert "greedy" in screen.transcript.plain.splitlines()[-1]
        app.pop_screen()
        await until(pilot, lambda: child._process.poll() is not None, timeout=30)


@pytest.mark.parametrize("in_process", [False, True], ids=["child process", "in process"])
async def test_load_error_is_shown_as_a_message(
    home: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    from gpt2tui.core.generation import resolve

    if in_process:
        monkeypatch.setenv(IN_PROCESS_ENV, "1")
    with pytest.raises(UserError) as expected:
        resolve("./missing")
    screen = ChatScreen("./missing")
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "Cannot chat" in screen.transcript.plain, timeout=60)
        assert str(expected.value) in screen.transcript.plain
        assert ("error", str(expected.value)) in app.notes
        assert screen.query_one("#prompt", PromptInput).disabled
        assert app.screen is screen


# ---- decoding keys ----------------------------------------------------------------------------------


async def test_each_decoding_key_changes_status_and_next_generation(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        status = screen.query_one(StatusLine)
        steps = [
            ("f2", "greedy max=100", {"strategy": "greedy"}),
            ("f3", "beam beams=4 max=100", {"strategy": "beam"}),
            ("f4", "top-k T=0.80 k=50 max=100", {"strategy": "top-k"}),
            ("f5", "top-p T=0.80 p=0.95 max=100", {"strategy": "top-p"}),
            ("f6", "top-p T=0.70 p=0.95 max=100", {"temperature": 0.7}),
            ("f7", "top-p T=0.80 p=0.95 max=100", {"temperature": 0.8}),
            ("f7", "top-p T=0.90 p=0.95 max=100", {"temperature": 0.9}),
            ("f8", "top-p T=0.90 p=0.95 max=50", {"max_new_tokens": 50}),
            ("f9", "top-p T=0.90 p=0.95 max=100", {"max_new_tokens": 100}),
        ]
        for number, (key, shown, used) in enumerate(steps, start=1):
            before = status.plain
            await pilot.press(key)
            await pilot.pause()
            assert status.plain != before or key == "f5", key
            assert shown in status.plain, (key, status.plain)
            await send(pilot, screen, f"question {number}")
            settings = fake_stream.calls[-1].settings
            for field_name, value in used.items():
                assert getattr(settings, field_name) == value, (key, settings)
        assert len(fake_stream.calls) == len(steps)


async def test_temperature_and_max_tokens_are_bounded(tiny: LoadedModel) -> None:
    screen = ChatScreen("tiny", GenerationSettings(temperature=0.2, max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await pilot.press("f6", "f6", "f6", "f8", "f8", "f8")
        assert screen.settings.temperature == pytest.approx(0.1)
        assert screen.settings.max_new_tokens == 1
        screen.settings = screen.settings.replace(temperature=1.95, max_new_tokens=tiny.context_length - 1)
        await pilot.press("f7", "f7", "f9", "f9")
        assert screen.settings.temperature == pytest.approx(2.0)
        assert screen.settings.max_new_tokens == tiny.context_length
        await pilot.press("f2")
        assert "greedy" in screen.status.plain and "(T=2.00 unused)" in screen.status.plain


async def test_keys_reach_the_screen_while_typing_in_the_prompt(tiny: LoadedModel) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        prompt = screen.query_one("#prompt", PromptInput)
        assert prompt.has_focus
        await pilot.press("h", "i", "f2", "ctrl+t", "f9")
        assert prompt.value == "hi"
        assert screen.settings.strategy == "greedy"
        assert screen.mode == "raw"
        assert screen.settings.max_new_tokens == 200


async def test_command_palette_offers_chat_keys(tiny: LoadedModel) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"beam")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: screen.settings.strategy == "beam")


# ---- stop, regenerate, clear, save ------------------------------------------------------------------


async def test_escape_stops_a_long_generation_and_keeps_the_partial_text(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    fake_stream.delay = 0.005
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=5000), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        prompt = screen.query_one("#prompt", PromptInput)
        prompt.value = "tell me everything"
        await pilot.press("enter")
        await until(pilot, lambda: screen.turns[-1].text.count(" ") >= 5)
        await pilot.press("a", "b")  # the prompt still takes typing while tokens stream
        assert prompt.value == "ab"
        assert screen.active is not None
        await pilot.press("escape")
        await until(pilot, lambda: screen.active is None)
        turn = screen.turns[-1]
        assert turn.reply is not None and turn.reply.stopped
        assert 5 <= turn.reply.new_tokens < 5000
        assert reply_text(screen).endswith(" [stopped]")
        assert turn.text.strip() in reply_text(screen)
        assert "stopped" in screen.status.plain
        assert app.screen is screen  # Escape during a reply stops it and does not leave


async def test_regenerate_replaces_the_last_reply_with_current_settings(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=3), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "first")
        await send(pilot, screen, "second")
        assert "r2w1" in reply_text(screen)
        await pilot.press("f2", "ctrl+r")
        await until(pilot, lambda: screen.active is None and "r3w1" in screen.transcript.plain)
        assert len(screen.turns) == 2
        assert fake_stream.calls[2].settings.strategy == "greedy"
        assert fake_stream.calls[2].prompt == fake_stream.calls[1].prompt  # same prompt, same history
        assert "r2w1" not in screen.transcript.plain
        assert screen.transcript.plain.count("tiny ▸") == 2
        assert screen.transcript.plain.count("greedy max=3 · 3 tokens") == 1  # greedy draws nothing: no seed


async def test_regenerate_uses_the_current_mode(tiny: LoadedModel, fake_stream: FakeStream) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=3), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "Once upon a time")
        assert fake_stream.calls[-1].prompt.endswith("Question: Once upon a time\nAnswer:")
        await pilot.press("ctrl+t", "ctrl+r")
        await until(pilot, lambda: screen.active is None and "r2w1" in screen.transcript.plain)
        assert fake_stream.calls[-1].prompt == "Once upon a time"  # raw: the text as typed
        assert fake_stream.calls[-1].stop_text is None
        assert screen.turns[-1].mode == "raw" and len(screen.turns) == 1
        assert "raw ▸ Once upon a time" in screen.transcript.plain
        assert "you ▸" not in screen.transcript.plain
        await pilot.press("ctrl+t", "ctrl+r")  # and back to chat
        await until(pilot, lambda: screen.active is None and "r3w1" in screen.transcript.plain)
        assert fake_stream.calls[-1].prompt == fake_stream.calls[0].prompt
        assert screen.transcript.plain.count("you ▸ Once upon a time") == 1


async def test_ctrl_l_clears_transcript_and_history_asking_first_when_unsaved(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=3), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "first")
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and dialog.question == chat_module.CLEAR_QUESTION
        assert dialog.question == "The transcript is not saved (ctrl+s saves it). Clear it anyway?"
        await pilot.press("n")  # keep it
        await until(pilot, lambda: app.screen is screen)
        assert len(screen.turns) == 1 and "you ▸ first" in screen.transcript.plain
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: app.screen is screen)
        assert screen.transcript.entry_count == 0 and screen.turns == []
        assert ("information", "Transcript cleared; the conversation starts afresh.") in app.notes
        await send(pilot, screen, "again")
        assert fake_stream.calls[-1].prompt == generation.chat_prompt([], "again", tiny, 3)
        await pilot.press("ctrl+s", "ctrl+l")  # saved: nothing to lose, so no question
        await until(pilot, lambda: screen.turns == [])
        assert app.screen is screen
        assert screen.status.plain.endswith("– tok/s")  # the cleared reply's speed went with it
        from gpt2tui.paths import transcripts_dir

        (saved,) = transcripts_dir().glob("*.md")
        kept = saved.read_text(encoding="utf-8")
        await send(pilot, screen, "a new conversation")
        await pilot.press("ctrl+s")  # a new file: the one saved before the clear keeps its conversation
        assert saved.read_text(encoding="utf-8") == kept and "again" in kept
        (new,) = set(transcripts_dir().glob("*.md")) - {saved}
        fresh = new.read_text(encoding="utf-8")
        assert "a new conversation" in fresh and "again" not in fresh


async def test_ctrl_s_saves_markdown_with_only_the_used_parameters_to_the_same_file(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    from gpt2tui.paths import transcripts_dir

    screen = ChatScreen("tiny", GenerationSettings(strategy="top-k", seed=77, max_new_tokens=3), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        assert ("warning", "Nothing to save yet.") in app.notes
        await send(pilot, screen, "what is a seed?")
        await pilot.press("f2")
        await send(pilot, screen, "and greedy?")
        await pilot.press("ctrl+s")
        files = list(transcripts_dir().glob("*.md"))
        assert len(files) == 1 and files[0] == screen.saved_path
        assert ("information", f"Saved {files[0]}") in app.notes
        text = files[0].read_text(encoding="utf-8")
        assert text.startswith("# Chat with tiny")
        assert "> what is a seed?" in text and "> r1w1 r1w2 r1w3" in text
        sampled, greedy = text.split("<!-- gpt2tui-transcript")[0].split("## 2. Chat")
        assert (
            "- strategy: top-k\n- max new tokens: 3\n- temperature: 0.8\n- top-k: 50\n- seed: 77" in sampled
        )
        assert "- strategy: greedy\n- max new tokens: 3\n- tokens: 3" in greedy
        assert "seed" not in greedy and "temperature" not in greedy and "top-k" not in greedy
        await send(pilot, screen, "once more?")
        await pilot.press("ctrl+s")
        assert list(transcripts_dir().glob("*.md")) == files  # the same file, saved again
        assert ("information", f"Saved again to {files[0]}") in app.notes
        assert "once more?" in files[0].read_text(encoding="utf-8")


async def test_escape_when_idle_asks_before_leaving_an_unsaved_transcript_every_time(
    tiny: LoadedModel, fake_stream: FakeStream, no_grace: None
) -> None:
    """The old 'press Escape again' warning stayed armed across turns: a later single Escape left the chat."""
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "hello")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and dialog.question == chat_module.LEAVE_QUESTION
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        await send(pilot, screen, "a second question")
        await pilot.press("escape")
        await until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog)
        )  # asks again: one Escape never leaves
        await pilot.press("escape")  # Escape in the dialog means 'stay'
        await until(pilot, lambda: app.screen is screen)
        assert len(screen.turns) == 2
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: screen not in app.screen_stack)


async def test_escape_leaves_at_once_when_the_transcript_is_saved(
    tiny: LoadedModel, fake_stream: FakeStream, no_grace: None
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "hi")
        await pilot.press("ctrl+s", "escape")
        await until(pilot, lambda: screen not in app.screen_stack)
        assert not any(isinstance(s, ConfirmDialog) for s in app.screen_stack)


async def test_escape_just_after_a_reply_finished_neither_asks_nor_leaves(
    tiny: LoadedModel, fake_stream: FakeStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Escape meant to stop a reply that had just finished: it must not count toward leaving."""
    monkeypatch.setattr(chat_module, "STOP_GRACE_SECONDS", 60.0)
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "hi")
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert app.screen is screen
        monkeypatch.setattr(chat_module, "STOP_GRACE_SECONDS", 0.0)  # later, Escape asks as usual
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))


async def test_a_reply_finishing_after_ctrl_s_makes_the_transcript_unsaved_again(
    tiny: LoadedModel, fake_stream: FakeStream, no_grace: None
) -> None:
    fake_stream.hold, fake_stream.hold_after = threading.Event(), 3
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=30), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        screen.query_one("#prompt", PromptInput).value = "long answer please"
        await pilot.press("enter")
        await until(pilot, lambda: screen.turns[-1].text.count(" ") >= 3)
        await pilot.press("ctrl+s")  # saves the partial reply
        assert screen.saved_path is not None and screen.active is not None
        fake_stream.hold.set()
        await until(pilot, lambda: screen.active is None)
        assert "r1w30" not in screen.saved_path.read_text(encoding="utf-8")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))  # the whole reply is not saved yet


# ---- scrolling while typing -------------------------------------------------------------------------


async def test_page_keys_scroll_the_transcript_while_the_prompt_has_focus(tiny: LoadedModel) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        transcript = screen.transcript
        for number in range(200):
            transcript.write(f"earlier line {number}")
        await pilot.pause()
        prompt = screen.query_one("#prompt", PromptInput)
        await pilot.press("h", "i")
        bottom = transcript.max_scroll_y
        assert prompt.has_focus and bottom > 0 and transcript.scroll_y == bottom
        await pilot.press("pageup")
        assert 0 < transcript.scroll_y < bottom
        await pilot.press("pagedown")
        assert transcript.scroll_y == bottom
        await pilot.press("ctrl+home")
        assert transcript.scroll_y == 0
        await pilot.press("ctrl+end")
        assert transcript.scroll_y == bottom
        assert prompt.has_focus and prompt.value == "hi"


# ---- beam, modes, errors ----------------------------------------------------------------------------


async def test_beam_shows_a_working_indicator_then_the_whole_reply(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    fake_stream.gate = threading.Event()
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=4), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen.query_one("#prompt", PromptInput).value = "think hard"
        await pilot.press("enter")
        await pilot.pause(0.2)
        pending = reply_text(screen)
        assert "thinking…" in pending and "beam search" in pending
        fake_stream.gate.set()
        await until(pilot, lambda: screen.active is None)
        assert reply_text(screen) == "tiny ▸ r1w1 r1w2 r1w3 r1w4 "
        assert (
            "beam beams=4 max=4 · 4 tokens" in screen.transcript.plain
        )  # beam search draws nothing: no seed


async def test_real_beam_search_reply(tiny: LoadedModel) -> None:
    settings = GenerationSettings(strategy="beam", seed=3, max_new_tokens=12)
    screen = ChatScreen("tiny", settings, loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        screen.query_one("#prompt", PromptInput).value = "hello"
        await pilot.press("enter")
        await until(pilot, lambda: screen.active is None)
        prompt = generation.chat_prompt([], "hello", tiny, 12)
        expected = generation.complete(tiny.model, tiny.tokenizer, prompt, settings, stop_text=tiny.stop_text)
        assert screen.turns[-1].text == expected
        assert "thinking" not in reply_text(screen)


async def test_chat_mode_uses_template_and_history_raw_mode_sends_text_as_is(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=3), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "first")
        first_reply = screen.turns[-1].text
        await send(pilot, screen, "second")
        chat_call = fake_stream.calls[-1]
        assert chat_call.prompt == generation.chat_prompt([("first", first_reply)], "second", tiny, 3)
        assert chat_call.prompt.endswith("Question: second\nAnswer:")
        assert chat_call.stop_text == tiny.stop_text and chat_call.template is None
        await pilot.press("ctrl+t")
        assert "raw mode" in screen.status.plain
        await send(pilot, screen, "Once upon a time")
        raw_call = fake_stream.calls[-1]
        assert raw_call.prompt == "Once upon a time"
        assert raw_call.template is None and raw_call.stop_text is None
        assert "raw ▸ Once upon a time" in screen.transcript.plain
        await pilot.press("ctrl+t")
        await send(pilot, screen, "third")  # raw turns stay out of the chat history
        history = [("first", first_reply), ("second", screen.turns[1].text)]
        assert fake_stream.calls[-1].prompt == generation.chat_prompt(history, "third", tiny, 3)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (UserError("The prompt does not fit the model."), "The prompt does not fit the model."),
        (RuntimeError("CUDA out of memory"), "RuntimeError: CUDA out of memory"),
    ],
)
async def test_generation_error_is_a_message_not_a_crash(
    tiny: LoadedModel, fake_stream: FakeStream, error: Exception, shown: str
) -> None:
    fake_stream.error = error
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        screen.query_one("#prompt", PromptInput).value = "boom"
        await pilot.press("enter")
        await until(pilot, lambda: screen.active is None)
        assert f"Generation failed: {shown}" in screen.transcript.plain
        assert ("error", shown) in app.notes
        fake_stream.error = None
        await send(pilot, screen, "still alive?")
        assert "r2w1" in reply_text(screen)


# ---- 80 columns ------------------------------------------------------------------------------------


async def test_status_line_shows_strategy_and_speed_at_80_columns(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    named = dataclasses.replace(tiny, name="qa-scratch-tiny-finetuned")
    screen = ChatScreen("qa-scratch-tiny-finetuned", GenerationSettings(max_new_tokens=3), loaded=named)
    app = ChatTestApp(screen)
    async with app.run_test(size=SMALLEST) as pilot:
        await send(pilot, screen, "hi")
        fake_stream.gate = threading.Event()
        screen.query_one("#prompt", PromptInput).value = "again"
        await pilot.press("enter")
        await pilot.pause()
        speed = f"{screen.status.tokens_per_second:.1f} tok/s"
        for key in ("f2", "f3", "f4", "f5"):
            await pilot.press(key)
            await pilot.pause()
            status = screen_lines(app)[1]
            assert screen.settings.describe() in status, (key, status)
            assert status.rstrip().endswith(f"generating… · {speed}"), (key, status)
            assert status.lstrip().startswith("qa-scratch"), (key, status)
        fake_stream.gate.set()
        await until(pilot, lambda: screen.active is None)


async def test_every_chat_key_is_on_screen_at_80_columns(tiny: LoadedModel) -> None:
    """Through the real app (its ctrl+q and ctrl+p share the footer): nothing is cut off at 80x24."""
    from gpt2tui.ui.app import GPT2TUIApp

    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SMALLEST) as pilot:
        screen = ChatScreen("tiny", loaded=tiny)
        await app.push_screen(screen)
        await until(pilot, lambda: "palette" in screen_lines(app)[-1])  # the footer has its keys
        lines = screen_lines(app)
        footer = lines[-1]
        for shown in ("esc stop/back", "^r regen", "^t chat/raw", "^l clear", "^s save", "^q", "^p palette"):
            assert shown in footer, (shown, footer)
        legend = lines[-5]
        for number in range(2, 10):
            assert f"F{number}" in legend, (number, legend)
        assert chat_module.KEY_LEGEND in legend and chat_module.SCROLL_LEGEND in lines[2]


# ---- the transcript's append cost -------------------------------------------------------------------


class TranscriptApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


async def _wrapped_per_append(lines_before: int) -> list[int]:
    """Fill a transcript with ``lines_before`` lines, then stream 300 chunks; the lines wrapped per chunk."""
    app = TranscriptApp()
    async with app.run_test(size=SIZE) as pilot:
        transcript = app.query_one(Transcript)
        for number in range(lines_before):
            transcript.write(f"line {number} of an earlier reply", prefix=Text("you ▸ "))
        await pilot.pause()
        assert transcript.line_count == lines_before
        transcript.open(Text("tiny ▸ "))
        costs = []
        for number in range(300):
            before = transcript.lines_wrapped
            transcript.append(f"tok{number} " + ("\n" if number % 50 == 49 else ""))
            costs.append(transcript.lines_wrapped - before)
        await pilot.pause()
        assert transcript.is_vertical_scroll_end
        return costs


async def test_append_cost_does_not_grow_with_transcript_length() -> None:
    short = await _wrapped_per_append(100)
    long = await _wrapped_per_append(10_000)
    assert short == long  # the same lines re-wrapped per chunk, whatever came before
    assert max(long) <= 4  # only the current paragraph (a few lines at 120 columns)


@dataclass
class Streamed:
    offsets: list[int]  # the scroll offset after each streamed line
    height: int  # visible lines
    end: tuple[int, int, int]  # once the reply ended: scrollable height, lines, scroll offset


async def _offsets_while_streaming(lines: int, *, scrolled_up: bool = False) -> Streamed:
    """A transcript that fills the screen, then a reply of ``lines`` lines streamed into it a line at a
    time. Each offset checks that the newest line is on screen."""
    app = TranscriptApp()
    async with app.run_test(size=SIZE) as pilot:
        transcript = app.query_one(Transcript)
        for number in range(60):
            transcript.write(f"line {number} of an earlier reply", prefix=Text("you ▸ "))
        await pilot.pause()
        if scrolled_up:
            transcript.scroll_home(animate=False, immediate=True)
        height = transcript.scrollable_content_region.height
        transcript.open(Text("tiny ▸ "))
        offsets = []
        for number in range(lines):
            transcript.append(f"streamed line {number}\n")
            offset = transcript.scroll_offset.y
            offsets.append(offset)
            if not scrolled_up:
                assert offset <= transcript.line_count - 1 < offset + height, (number, offset)
        transcript.close()
        await pilot.pause()
        end = (transcript.virtual_size.height, transcript.line_count, transcript.scroll_offset.y)
        return Streamed(offsets, height, end)


async def test_a_streamed_reply_scrolls_in_jumps_and_its_newest_line_stays_in_view() -> None:
    streamed = await _offsets_while_streaming(40)
    offsets, jump = streamed.offsets, streamed.height // 4
    steps = [b - a for a, b in itertools.pairwise(offsets) if b != a]
    # A quarter of the height at a time: every full repaint of the transcript shows several new lines.
    assert jump > 1 and steps == [jump] * len(steps), offsets
    assert len(steps) <= 40 // jump + 1
    # When the reply ends the blank rows below it go: its last line is the bottom row again.
    rows, lines, offset = streamed.end
    assert rows == lines and offset == lines - streamed.height


async def test_jump_scrolling_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPT2TUI_JUMP_SCROLL", "0")
    offsets = (await _offsets_while_streaming(40)).offsets
    assert [b - a for a, b in itertools.pairwise(offsets)] == [1] * 39  # a line at a time


async def test_a_reader_scrolled_up_is_not_moved_by_a_streamed_reply() -> None:
    streamed = await _offsets_while_streaming(40, scrolled_up=True)
    assert set(streamed.offsets) == {0}
    rows, lines, offset = streamed.end
    assert offset == 0 and rows == lines  # no blank rows kept for a jump


# ---- through the real app ---------------------------------------------------------------------------


async def test_chat_through_the_app_from_the_model_list(
    tiny_model: str, fake_stream: FakeStream, no_grace: None
) -> None:
    """Home → c on the stored model → the chat loads it from the store → a reply → Escape, yes → home.

    In this process, with the fake stream (the child process path has its own test above)."""
    from gpt2tui.ui.app import GPT2TUIApp
    from gpt2tui.ui.screens.home import HomeScreen

    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.loaded is not None, 30)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await pilot.press("f2")
        await send(pilot, screen, "hello")
        assert fake_stream.calls[-1].settings.strategy == "greedy"
        assert reply_text(screen).startswith("tiny ▸ r1w1")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, HomeScreen))


async def test_a_narrow_status_line_keeps_the_strategy_and_its_first_parameter() -> None:
    """Two panes side by side at 80 columns get 38 each: the line showed 'big · chat · t…' while generating."""

    class Narrow(App[None]):
        CSS = "StatusLine { width: 40; }"

        def compose(self) -> ComposeResult:
            yield StatusLine()

    app = Narrow()
    async with app.run_test(size=(80, 5)) as pilot:
        status = app.query_one(StatusLine)
        status.model_name = "kjv-renamed-model"
        status.state = "generating…"
        status.tokens_per_second = 123.4
        await pilot.pause()
        assert status.plain.startswith("kjv-…") and "top-p T=0.80" in status.plain, status.plain
        assert status.plain.endswith("123.4 tok/s") and len(status.plain) <= 38
        status.state = ""  # between replies the line keeps its mode when there is room
        status.model_name = "a"
        status.settings = GenerationSettings(strategy="greedy")
        await pilot.pause()
        assert status.plain.startswith("a · chat · greedy max=100"), status.plain
