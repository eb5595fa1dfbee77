"""Editing keys and typed characters take effect in the order they were typed (Textual issue #6605).

Keys are posted to the app all at once, as a terminal delivers them when the app is busy; Textual used to run
a backspace only after it had bubbled up to the app, so a character typed after it was inserted first and
then deleted instead.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Input

from gpt2tui.core.data import DataSpec
from gpt2tui.ui.screens.setup import SetupScreen
from gpt2tui.ui.widgets.prompt_input import PromptInput
from gpt2tui.ui.widgets.text_field import TextField
from tests.conftest import QA_CSV
from tests.test_ui_app import make_app

KEYS = [*"ba", "backspace", "c", "left", "x", "end", "backspace", "backspace", *"yz"]
"""Typed: ba, ⌫ (b), c (bc), ← (b|c), x (bx|c), end (bxc|), ⌫⌫ (b), yz: "byz"."""


def post_at_once(app: App[Any], keys: list[str]) -> None:
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


class Boxes(App[None]):
    def compose(self) -> ComposeResult:
        yield TextField(id="field")
        yield PromptInput(id="prompt")


@pytest.mark.parametrize("box", ["field", "prompt"])
async def test_keys_posted_at_once_apply_in_order(box: str) -> None:
    app = Boxes()
    async with app.run_test() as pilot:
        widget: Any = app.query_one(f"#{box}")
        widget.focus()
        await pilot.pause()
        post_at_once(app, KEYS)
        await pilot.pause()
        await pilot.pause()
        assert (widget.value if box == "field" else widget.text) == "byz"


async def test_the_setup_form_keeps_the_order_of_backspace_and_typing() -> None:
    """Clearing a field with backspace and typing the new value straight away, in a real screen."""
    app = make_app()
    async with app.run_test() as pilot:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
        seed = setup.query_one("#seed", Input)
        seed.focus()
        seed.cursor_position = len(seed.value)
        await pilot.pause()
        post_at_once(app, ["backspace", "backspace", "backspace", *"7", "backspace", *"19"])
        await pilot.pause()
        await pilot.pause()
        assert seed.value == "19"
