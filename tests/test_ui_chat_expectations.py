"""The chat says what to expect of its model, as the home screen's models list does (issue 11): a model whose
run was stopped early is marked in the status line, and a tiny scratch model says that gibberish is expected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from gpt2tui.core.generation import GenerationSettings
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.widgets.chat_pane import model_metadata
from tests import test_ui_chat
from tests.test_ui_chat import SIZE, ChatTestApp, FakeStream, send, until

fake_stream = test_ui_chat.fake_stream

TINY_NOTE = (
    "tiny: a tiny model trained from scratch: gibberish is expected at its size (it learns the shape of its "
    "data, not its facts)."
)


def set_metadata(home: Path, name: str, **fields: object) -> None:
    path = home / "models" / name / "gpt2tui.json"
    meta = json.loads(path.read_text())
    meta.update(fields)
    path.write_text(json.dumps(meta))


async def test_a_tiny_scratch_model_says_in_the_chat_that_gibberish_is_expected(
    tiny_model: str, fake_stream: FakeStream
) -> None:
    screen = ChatScreen(tiny_model, GenerationSettings(max_new_tokens=2))
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: screen.loaded is not None)
        assert screen.transcript.entry_text(0) == TINY_NOTE
        assert screen.status.model_name == "tiny"
        await send(pilot, screen, "hello")
        assert screen.transcript.entry_text(0) == TINY_NOTE  # the note stays above the conversation
        assert screen.turns[-1].prompt_entry > 0


async def test_a_model_stopped_early_is_marked_in_the_chat_status(
    tiny_model: str, home: Path, fake_stream: FakeStream
) -> None:
    shutil.copytree(home / "models" / tiny_model, home / "models" / "halfway")
    set_metadata(
        home, "halfway", stopped=True, steps=12, base="distilgpt2", base_kind="hub", scratch_size=None
    )
    screen = ChatScreen("halfway", GenerationSettings(max_new_tokens=2))
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: screen.loaded is not None)
        assert screen.status.model_name == "halfway (stopped)"
        assert screen.transcript.entry_text(0) == "halfway: stopped early at step 12 of 30."


def test_a_model_in_a_child_process_is_looked_up_in_the_store(tiny_model: str) -> None:
    meta = model_metadata(SimpleNamespace(name=tiny_model))  # type: ignore[arg-type]
    assert meta is not None and meta.scratch_size == "tiny"
    assert model_metadata(SimpleNamespace(name="gpt2")) is None  # type: ignore[arg-type]  # not stored
    assert model_metadata(SimpleNamespace(name="/some/folder")) is None  # type: ignore[arg-type]
