"""The chat's prompt box and its confirmations (issue 11): typing while the model loads is queued and sent when
it is ready; multi-line prompts (ctrl+j) in a box that grows; prompt history on ↑/↓; the note when a prompt
was cut to fit the context; ctrl+l and ctrl+q ask when the chat is unsaved; Escape with a toast up; toasts
never over the prompt box, and a toast about a run withdrawn when the run ends.

Helpers and fixtures come from ``test_ui_chat.py`` (the fake stream, the bare host app, ``until``, ``send``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from textual.widget import Widget

from gpt2tui.core import generation
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, LoadedModel
from gpt2tui.core.generator import IN_PROCESS_ENV
from gpt2tui.ui import app as app_module
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens import chat as chat_module
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.widgets import chat_pane
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
from gpt2tui.ui.widgets.prompt_input import PromptInput
from tests import test_ui_chat
from tests.screen_text import screen_rows, visible_text
from tests.test_ui_chat import ROOT, SIZE, SMALLEST, ChatTestApp, FakeStream, send, until

# The fixtures of the chat tests, under the names the tests below ask for.
tiny = test_ui_chat.tiny
fake_stream = test_ui_chat.fake_stream
no_grace = test_ui_chat.no_grace


def prompt_of(screen: ChatScreen) -> PromptInput:
    return screen.query_one("#prompt", PromptInput)


def toasts(app: Any) -> list[Widget]:
    """The toasts on the screen in front (Textual's ``Toast`` widgets, found by their type name)."""
    return list(app.screen.query("Toast"))


def held_load(monkeypatch: pytest.MonkeyPatch, outcome: LoadedModel | Exception) -> threading.Event:
    """The chat loads its model in this process, held until the returned event is set; then ``outcome``."""
    gate = threading.Event()

    def load(ref: str) -> LoadedModel:
        gate.wait(10)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setenv(IN_PROCESS_ENV, "1")
    monkeypatch.setattr(generation, "load", load)
    return gate


# ---- typing while the model loads ---------------------------------------------------------------------


async def test_a_prompt_typed_while_the_model_loads_is_queued_and_sent_when_it_is_ready(
    tiny: LoadedModel, fake_stream: FakeStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = held_load(monkeypatch, tiny)
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2))
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        prompt = prompt_of(screen)
        assert prompt.has_focus and not prompt.disabled
        assert prompt.placeholder == "Loading the model… Enter queues your prompt until it is ready"
        await pilot.press(*"hello", "enter")
        assert prompt.value == "" and prompt.placeholder == "queued: sent when the model is ready"
        assert screen.status.state == "loading… (1 prompt queued)"
        await pilot.press(*"and you?", "enter")
        assert screen.status.state == "loading… (2 prompts queued)"
        assert fake_stream.calls == [] and screen.turns == []
        await pilot.press(*"a draft")  # typing goes on meanwhile
        gate.set()
        await until(pilot, lambda: len(screen.turns) == 2 and screen.active is None and screen.turns[1].text)
        assert [turn.prompt for turn in screen.turns] == [
            "hello",
            "and you?",
        ]  # in order, one after the other
        assert "Question: hello" in fake_stream.calls[0].prompt
        assert "you ▸ hello" in screen.transcript.plain and "you ▸ and you?" in screen.transcript.plain
        assert prompt.value == "a draft"  # the text being typed is untouched
        assert str(prompt.placeholder).startswith("Ask tiny (Enter sends")


async def test_a_load_failure_drops_the_queued_prompt_with_a_sentence(
    home: Path, fake_stream: FakeStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = held_load(monkeypatch, UserError("No model named 'ghost' is stored."))
    screen = ChatScreen("ghost")
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"hello", "enter")
        assert prompt_of(screen).placeholder == chat_module.QUEUED_PLACEHOLDER
        gate.set()
        await until(pilot, lambda: "Cannot chat" in screen.transcript.plain)
        lines = screen.transcript.plain.splitlines()
        assert lines[-1] == "The queued prompt was not sent: the model did not load."
        assert lines[0] == "Cannot chat: No model named 'ghost' is stored."
        assert prompt_of(screen).disabled and fake_stream.calls == [] and screen.queued == []
        assert prompt_of(screen).placeholder == "The model did not load (Escape goes back)"
        await pilot.press("ctrl+b", "ctrl+g")  # nothing to put beside it, nothing to compare
        assert app.screen is screen and len(screen.panes) == 1
        assert ("warning", chat_module.SPLIT_NOT_LOADED) in app.notes
        assert ("warning", chat_module.GRID_NOT_LOADED) in app.notes


# ---- multi-line prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALLEST, SIZE], ids=["80x24", "120x40"])
async def test_ctrl_j_starts_a_new_line_the_box_grows_to_eight_and_enter_sends_them_all(
    tiny: LoadedModel, fake_stream: FakeStream, size: tuple[int, int]
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny, mode="raw")
    async with ChatTestApp(screen).run_test(size=size) as pilot:
        prompt = prompt_of(screen)
        await pilot.pause()
        assert prompt.region.height == 3  # one line and the box's border
        await pilot.press(*"line one", "ctrl+j", *"line two")
        await pilot.pause()
        assert prompt.value == "line one\nline two" and prompt.region.height == 4
        for number in range(3, 13):
            await pilot.press("ctrl+j", *f"line {number}")
        await pilot.pause()
        assert prompt.region.height == 10  # 8 lines, then it scrolls
        assert prompt.region.bottom == size[1] - 1  # still right above the footer
        await pilot.press("enter")
        await until(pilot, lambda: screen.active is None and bool(screen.turns) and screen.turns[-1].text)
        sent = "\n".join(["line one", "line two", *(f"line {n}" for n in range(3, 13))])
        assert fake_stream.calls[-1].prompt == sent and screen.turns[-1].prompt == sent
        assert "raw ▸ line one\nline two\nline 3" in screen.transcript.plain
        await pilot.pause()
        assert prompt.value == "" and prompt.region.height == 3


# ---- history -----------------------------------------------------------------------------------------


async def test_up_and_down_walk_the_prompt_history_and_keep_the_draft(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        prompt = prompt_of(screen)
        await send(pilot, screen, "first")
        await pilot.press(*"two", "ctrl+j", *"lines", "enter")
        await until(pilot, lambda: screen.active is None and len(screen.turns) == 2 and screen.turns[1].text)
        await pilot.press(*"my draft")
        await pilot.press("up")
        assert prompt.value == "two\nlines" and prompt.cursor_location == (1, 5)  # the cursor at its end
        await pilot.press("up")  # on the recalled prompt's last line: the cursor moves up a line
        assert prompt.value == "two\nlines" and prompt.cursor_location[0] == 0
        await pilot.press("up")
        assert prompt.value == "first"
        await pilot.press("up")  # the oldest: it stays
        assert prompt.value == "first"
        await pilot.press("down")
        assert prompt.value == "two\nlines"
        await pilot.press("down")
        assert prompt.value == "my draft"  # past the newest: the draft, as it was
        await pilot.press("down")
        assert prompt.value == "my draft"
        await pilot.press("up", "enter")  # a recalled prompt is sent as typed
        await until(pilot, lambda: screen.active is None and len(screen.turns) == 3 and screen.turns[2].text)
        assert screen.turns[2].prompt == "two\nlines" and prompt.value == ""
        assert prompt.sent == ["first", "two\nlines"]  # sent twice in a row: kept once


async def test_the_prompt_history_lasts_the_session_across_chats(
    tiny: LoadedModel, fake_stream: FakeStream, no_grace: None
) -> None:
    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SIZE) as pilot:
        first = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
        await app.push_screen(first)
        await send(pilot, first, "remember me")
        await pilot.press("ctrl+s", "escape")
        await until(pilot, lambda: first not in app.screen_stack)
        second = ChatScreen("tiny", loaded=tiny)
        await app.push_screen(second)
        await pilot.pause()
        await pilot.press("up")
        assert prompt_of(second).value == "remember me"


# ---- the prompt cut to fit the context ----------------------------------------------------------------


async def test_a_prompt_cut_to_fit_the_context_gets_a_note_under_the_reply(tiny: LoadedModel) -> None:
    """Through the real core: the tiny model's context is 256 tokens."""
    settings = GenerationSettings(strategy="greedy", seed=1, max_new_tokens=6)
    screen = ChatScreen("tiny", settings, loaded=tiny, mode="raw")
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "the Sun")
        assert "The prompt was cut" not in screen.transcript.plain  # nothing cut: no note
        await send(pilot, screen, "the Sun and the Moon " * 100)
        reply = screen.turns[-1].reply
        assert reply is not None and reply.prompt_trimmed > 0 and reply.prompt_tokens == 250
        note = "The prompt was cut to its last 250 tokens to fit the model's context of 256."
        assert screen.transcript.plain.splitlines()[-1] == f"  {note}"
        assert note == chat_pane.TRIMMED_NOTE.format(kept=250, context=tiny.context_length)


async def test_a_reply_that_filled_the_context_says_so(tiny: LoadedModel) -> None:
    """max new tokens at the context's size (F9's top rung): the reply gets what the prompt leaves, and a note."""
    settings = GenerationSettings(strategy="greedy", seed=1, max_new_tokens=tiny.context_length)
    screen = ChatScreen("tiny", settings, loaded=tiny, mode="raw")
    tiny.model.generation_config.min_new_tokens = (
        tiny.context_length
    )  # no end-of-text before the context ends
    try:
        async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
            await send(pilot, screen, "the Sun and the Moon")
            reply = screen.turns[-1].reply
            assert reply is not None and reply.new_tokens == reply.room == 256 - reply.prompt_tokens
            note = (
                f"The reply ended at the model's context of 256: {reply.room} new tokens fit after the "
                f"{reply.prompt_tokens}-token prompt, not the 256 asked for."
            )
            assert screen.transcript.plain.splitlines()[-1] == f"  {note}"
            screen.settings = settings.replace(max_new_tokens=4)
            await send(pilot, screen, "the Sun")
            assert (
                "The reply ended at" not in screen.transcript.plain.splitlines()[-1]
            )  # it had room: no note
    finally:
        tiny.model.generation_config.min_new_tokens = None


# ---- ctrl+q asks when a chat is unsaved ---------------------------------------------------------------


async def test_ctrl_q_asks_only_when_a_chat_in_the_stack_is_unsaved(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
        await app.push_screen(screen)
        await send(pilot, screen, "hello")
        await pilot.press("f1")  # the key map over the chat: the chat is below, still unsaved
        await pilot.pause()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert (
            dialog.question == "The chat with tiny is not saved (ctrl+s in the chat saves it). Quit anyway?"
        )
        await pilot.press("ctrl+q")  # pressed again: the one question stays
        await pilot.pause()
        assert sum(isinstance(s, ConfirmDialog) for s in app.screen_stack) == 1
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert app.return_code is None and screen in app.screen_stack
        await pilot.press("escape")  # close the key map
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


async def test_ctrl_q_quits_at_once_when_every_chat_is_saved(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
        await app.push_screen(screen)
        await send(pilot, screen, "hello")
        await pilot.press("ctrl+s", "ctrl+q")
        await until(pilot, lambda: app.return_code is not None)
        assert not any(isinstance(s, ConfirmDialog) for s in app.screen_stack)
    assert app.return_code == 0


# ---- Escape and toasts --------------------------------------------------------------------------------


async def test_escape_with_a_toast_up_asks_to_leave_and_dismisses_the_toast(
    tiny: LoadedModel, fake_stream: FakeStream, no_grace: None
) -> None:
    """The report: send a prompt, ctrl+t, Escape within 5 s (the toast's life) did nothing."""
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await send(pilot, screen, "hello")
        await pilot.press("ctrl+t")
        await until(pilot, lambda: len(toasts(app)) == 1)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert app.screen.question == chat_module.LEAVE_QUESTION  # type: ignore[attr-defined]
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert toasts(app) == []


async def test_escape_with_a_toast_up_stops_the_reply(tiny: LoadedModel, fake_stream: FakeStream) -> None:
    fake_stream.delay = 0.005
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=5000), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        prompt_of(screen).value = "tell me everything"
        await pilot.press("enter")
        await until(pilot, lambda: screen.turns[-1].text.count(" ") >= 3)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: len(toasts(app)) == 1)
        await pilot.press("escape")
        await until(pilot, lambda: screen.active is None)
        reply = screen.turns[-1].reply
        assert reply is not None and reply.stopped and app.screen is screen


@pytest.mark.parametrize("size", [SMALLEST, SIZE], ids=["80x24", "120x40"])
async def test_toasts_never_cover_the_prompt_box(
    tiny: LoadedModel, fake_stream: FakeStream, size: tuple[int, int]
) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=size, notifications=True) as pilot:
        for number in range(9):
            await pilot.press("ctrl+j", *f"line {number}")
        await pilot.press("ctrl+t", "ctrl+t", "ctrl+s")  # three toasts, one a warning
        await until(pilot, lambda: len(toasts(app)) == 3)
        await pilot.pause()
        prompt = prompt_of(screen)
        assert prompt.region.height == 10
        region = prompt.region
        owners = {
            app.screen.get_widget_at(x, y)[0]
            for x in range(region.x, region.right)
            for y in range(region.y, region.bottom)
        }
        assert all(owner is prompt or owner.parent is prompt for owner in owners)  # itself or its scrollbar
        shown = visible_text(app, prompt).splitlines()
        assert [row.strip("▊▎▄▀ ") for row in shown[1:-1]] == [f"line {n}" for n in range(1, 9)]
        rows = screen_rows(app)
        assert "Raw completion: the model" in "".join(rows[2 : prompt.region.y])  # the toasts are above it
        assert all(toast.region.y >= 2 for toast in toasts(app))  # below the header and the status line


async def test_a_toast_about_a_run_is_replaced_when_the_run_ends(home: Path) -> None:
    """ "Run … keeps training in the background" stayed up after the run had ended."""
    from tests.test_ui_runs import LIVE_ID, live_status, open_monitor, started, step, write_run

    folder = write_run(home, LIVE_ID, [started(), step(1, 4.0)], state="running", **live_status())
    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    monkey_timeout = 30  # long enough to still be up when the run ends
    app.NOTIFICATION_TIMEOUT = monkey_timeout
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        await open_monitor(pilot, app, LIVE_ID)
        await pilot.press("escape")  # leave: "Run … keeps training in the background; …"
        await until(pilot, lambda: "keeps training" in "".join(screen_rows(app)))
        app.notify("An unrelated note.")
        status = json.loads((folder / "status.json").read_text())
        (folder / "status.json").write_text(json.dumps({**status, "state": "finished"}))
        app.run_watcher.poll_now()
        await until(pilot, lambda: f"Run {LIVE_ID} has finished." in "".join(screen_rows(app)))
        text = "".join(screen_rows(app))
        assert "keeps training" not in text and "An unrelated note." in text
        assert app_module.RUN_ENDED == "Run {run} has {state}."


async def test_the_transcript_keeps_its_last_lines_in_view_while_the_prompt_box_grows_and_shrinks(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SMALLEST) as pilot:
        transcript = screen.transcript
        while transcript.virtual_size.height < transcript.scrollable_content_region.height - 2:
            transcript.write("an earlier line")  # nearly full, so a grown prompt box leaves it too short
        await pilot.pause()
        assert transcript.is_vertical_scroll_end
        await pilot.press(*"one", "ctrl+j", *"two", "ctrl+j", *"three", "ctrl+j", *"four", "ctrl+j", *"five")
        await pilot.pause()
        assert prompt_of(screen).region.height == 7
        assert transcript.max_scroll_y > 0 and transcript.is_vertical_scroll_end  # the last line still shows
        await pilot.press("enter")
        await until(pilot, lambda: screen.active is None and bool(screen.turns) and screen.turns[-1].reply)
        await pilot.pause()
        assert transcript.is_vertical_scroll_end  # the reply, in view
