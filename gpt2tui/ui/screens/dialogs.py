"""Small modal dialogs: a yes/no confirmation and a name prompt that shows the core's error in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from gpt2tui.core.errors import UserError


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with ``True`` only on an explicit yes."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes_label: str = "Yes", no_label: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes_label
        self.no_label = no_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
                yield Button(f"{self.no_label} (n)", variant="primary", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class NameDialog(ModalScreen[str | None]):
    """Ask for a name and apply it with ``apply``; a :class:`UserError` shows under the input."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, initial: str, apply: Callable[[str], object]) -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial
        self.apply = apply

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, id="title")
            yield Input(self.initial, id="name")
            yield Static("", id="error", classes="error")
            yield Static("enter: apply   escape: cancel", classes="hint")
        yield Footer()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        try:
            self.apply(name)
        except UserError as err:
            self.query_one("#error", Static).update(str(err))
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
