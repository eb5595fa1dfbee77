"""The footer (``ui.widgets.footer``): its keys are there in the screen's first frame, and a report of key
bindings that did not change does not rebuild them."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Button, Static

from gpt2tui.ui.widgets.footer import Footer


class KeyedButton(Button):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("x", "press", "Press it")]


class Keys(Screen[None]):
    AUTO_FOCUS = ""
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "noop", "New thing")]

    def __init__(self) -> None:
        super().__init__()
        self.keys_at_mount: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("body")
        yield KeyedButton("button")
        yield Footer()

    def on_mount(self) -> None:  # runs once the children are mounted, before the first frame is drawn
        self.keys_at_mount = [str(getattr(key, "description", "")) for key in self.query("FooterKey")]

    def action_noop(self) -> None:
        pass


class KeysApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(Keys())


async def test_the_keys_are_composed_with_the_screen_and_rebuilt_only_when_they_change() -> None:
    app = KeysApp()
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, Keys)
        assert "New thing" in screen.keys_at_mount  # Textual's own footer has no keys until a frame later
        labels = list(screen.query("FooterKey"))
        screen.refresh_bindings()  # a report with the same keys
        await pilot.pause()
        assert list(screen.query("FooterKey")) == labels  # the same widgets: not rebuilt
        screen.query_one(KeyedButton).focus()  # new keys
        await pilot.pause()
        assert [str(getattr(key, "description", "")) for key in screen.query("FooterKey")] == [
            "Press it",
            "New thing",
            "palette",
        ]
