"""Shared modal dialogs (a yes/no confirmation, a name prompt, where to push a model): widgets any screen may
push, not screens of the app's navigation, so they live here and screens importing them never import each
other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from gpt2tui.core.errors import UserError
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.text_field import TextField
from gpt2tui.ui.wording import Advice, in_screen_terms


class ConfirmDialog(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with ``True`` only on an explicit yes."""

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self, question: str, yes_label: str = "Yes", no_label: str = "No", id: str | None = None
    ) -> None:
        super().__init__(id=id)
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
    """Ask for a name and apply it with ``apply``; a :class:`UserError` or an ``OSError`` shows under the input.

    Enter on the unchanged name just closes the dialog (with ``None``, as escape does): there is nothing to
    apply, and ``apply`` would refuse a name that is already taken, by this very model.
    """

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        initial: str,
        apply: Callable[[str], object],
        doing: str = "apply the name",
        advice: Advice | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial
        self.apply = apply
        self.doing = doing  # completes "Could not ..." when ``apply`` fails with an OSError
        self.advice = advice or {}  # the caller's own advice for the core's refusals

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, id="title")
            yield TextField(self.initial, id="name")
            yield Static("", id="error", classes="error")
            yield Static("enter: apply   escape: cancel", classes="hint")
        yield Footer()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if name == self.initial:
            self.dismiss(None)
            return
        try:
            self.apply(name)
        except UserError as err:
            self.query_one("#error", Static).update(Text(in_screen_terms(err, self.advice)))
            return
        except OSError as err:  # permissions, a read-only disk, ...: said in place, never a crash
            self.query_one("#error", Static).update(Text(os_error_sentence(self.doing, err)))
            return
        self.dismiss(name)

    @on(Input.Changed, "#name")
    def edited(self) -> None:
        """The refusal was about the name as it was: an edit takes it away (Enter checks again)."""
        self.query_one("#error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class PushTarget:
    """Where the push dialog was told to upload a model."""

    repo_id: str
    private: bool


class PushDialog(ModalScreen[PushTarget | None]):
    """Ask where to push ``model``: a repository id, checked in place with ``check`` (a :class:`UserError`
    shows under the input, the dialog stays), and private (the default) or public.

    An id without an owner (``qa-tiny``, offered when the user's Hub name is not known without the network)
    gets the cursor at its start, where ``OWNER/`` goes.
    """

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, model: str, initial: str, check: Callable[[str], object], private: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.initial = initial
        self.check = check
        self.private = private

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(f"Push '{self.model}' to the Hugging Face Hub as repository:"), id="title")
            yield TextField(self.initial, placeholder="OWNER/NAME", id="repo-id", select_on_focus=False)
            with RadioSet(id="visibility"):
                yield RadioButton(
                    "private: only you (or your organization) can see it", self.private, id="private"
                )
                yield RadioButton("public: anyone can see and download it", not self.private, id="public")
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Push", variant="primary", id="push")
                yield Button("Cancel", id="cancel")
            yield Static("enter: push   tab: private or public   escape: cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        repo_id = self.query_one("#repo-id", Input)
        repo_id.focus()
        repo_id.cursor_position = len(self.initial) if "/" in self.initial else 0

    @on(Input.Submitted)
    @on(Button.Pressed, "#push")
    def submitted(self) -> None:
        repo_id = self.query_one("#repo-id", Input).value.strip()
        try:
            self.check(repo_id)
        except UserError as err:
            self.query_one("#error", Static).update(Text(str(err)))
            return
        self.dismiss(PushTarget(repo_id, private=not self.query_one("#public", RadioButton).value))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PickDialog(ModalScreen[str | None]):
    """Pick one of ``choices`` (a name, with a few words each) or type any other (a model's Hub id or folder,
    a file); dismisses with the name, or ``None`` on escape.

    What is typed is not checked here: using it is, where the failure can be said in place.
    """

    CSS_PATH = "dialogs.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        choices: list[tuple[str, str]],
        typed: str = "or a Hub id (user/repo) or a model folder, then Enter",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.typed_placeholder = typed

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), id="title")  # wraps, where a Label would be cut
            options = [
                Option(Text.assemble((name, "bold"), "  ", (about, "dim")), id=name)
                for name, about in self.choices
            ]
            yield OptionList(*options, id="choices")
            yield TextField(placeholder=self.typed_placeholder, id="typed")
            yield Static("", id="error", classes="error")
            yield Static("enter: choose   tab: type one instead   escape: cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        choices = self.query_one("#choices", OptionList)
        if self.choices:
            choices.highlighted = 0
            choices.focus()
        else:
            choices.display = False
            self.query_one("#typed", Input).focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    @on(Input.Submitted)
    def typed(self, event: Input.Submitted) -> None:
        typed = event.value.strip()
        if not typed:
            self.query_one("#error", Static).update("Type one, or pick one from the list.")
            return
        self.dismiss(typed)

    def action_cancel(self) -> None:
        self.dismiss(None)


def os_error_sentence(doing: str, err: OSError) -> str:
    """An ``OSError`` as one sentence: ``Could not rename the model: Permission denied (/path).``"""
    reason = err.strerror or str(err) or type(err).__name__
    where = f" ({err.filename})" if err.filename else ""
    return f"Could not {doing}: {reason}{where}."
