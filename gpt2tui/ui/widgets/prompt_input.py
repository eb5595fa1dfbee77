"""The chat's prompt box: Enter sends, ctrl+j starts a new line, ↑/↓ on its first/last line walk the history.

A ``TextArea`` rather than an ``Input``, because a prompt may span lines: the box grows with its text (up to
``max-height`` rows in ``chat.tcss``, then it scrolls). Terminals send the same byte for shift+enter as for
Enter (or a sequence few of them agree on), so the newline key is ctrl+j, a line feed in every terminal.

The history works as in a shell (and oterm): ↑ on the first line brings back the previous prompt, ↓ on the last
line the next one, and past the newest the text that was being typed (the draft) comes back as it was. The
history belongs to the app (every chat of the session shares it), so it is passed in: a list of the prompts
sent, oldest first.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

from gpt2tui.ui.widgets.text_field import KeysInOrder


class PromptInput(KeysInOrder, TextArea):
    """A soft-wrapped, growing text box whose Enter posts :class:`PromptInput.Submitted` instead of a newline."""

    KEY_MAP_PLACE = "prompt box"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Enter and ctrl+j are handled in _on_key, before TextArea's own handling inserts a newline: these
        # entries put them in the key map (F1), with the history keys that replace TextArea's up and down.
        Binding("enter", "submit", "send", tooltip="Send the prompt", show=False),
        Binding("ctrl+j", "newline", "new line", tooltip="Start a new line in the prompt", show=False),
        Binding(
            "up",
            "cursor_up",
            "previous prompt",
            tooltip="The previous prompt (on the first line)",
            show=False,
        ),
        Binding(
            "down", "cursor_down", "next prompt", tooltip="The next prompt (on the last line)", show=False
        ),
    ]

    class Submitted(Message):
        """Enter was pressed: ``value`` is the box's text (the box keeps it until :meth:`accept`)."""

        def __init__(self, prompt_input: PromptInput, value: str) -> None:
            super().__init__()
            self.prompt_input = prompt_input
            self.value = value

        @property
        def control(self) -> PromptInput:
            return self.prompt_input

    def __init__(
        self,
        sent: list[str] | None = None,
        *,
        placeholder: str = "",
        id: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(
            soft_wrap=True,
            tab_behavior="focus",  # Tab moves focus, as in the rest of the app
            show_line_numbers=False,
            placeholder=placeholder,
            highlight_cursor_line=False,
            id=id,
            disabled=disabled,
        )
        self.sent = sent if sent is not None else []  # the prompt history (TextArea.history is its undo)
        self._recalled: int | None = None  # index of the history entry shown; None: the draft is shown
        self._draft = ""

    @property
    def value(self) -> str:
        """The text, under ``Input``'s name (benches and tests set it to type a prompt at once)."""
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)

    def accept(self) -> None:
        """The prompt was sent (or queued): into the history (once, if sent twice in a row), and the box
        starts empty."""
        prompt = self.text.strip()
        if prompt and (not self.sent or self.sent[-1] != prompt):
            self.sent.append(prompt)
        self._recalled = None
        self._draft = ""
        self.value = ""

    async def _on_key(self, event: events.Key) -> None:
        """Enter submits and ctrl+j inserts a newline (TextArea's documented way to change its keys)."""
        if event.key in ("enter", "ctrl+j") and not self.read_only:
            event.stop()
            event.prevent_default()
            if event.key == "enter":
                self.action_submit()
            else:
                self.action_newline()
            return
        await super()._on_key(event)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.replace("\n", *self.selection, maintain_selection_offset=False)

    def action_cursor_up(self, select: bool = False) -> None:
        """On the first line: the previous prompt of the history; elsewhere the cursor moves up."""
        if select or not self.navigator.is_first_wrapped_line(self.cursor_location) or not self._recall(-1):
            super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        """On the last line: the next prompt of the history, then the draft; elsewhere the cursor moves down."""
        if select or not self.navigator.is_last_wrapped_line(self.cursor_location) or not self._recall(1):
            super().action_cursor_down(select)

    def _recall(self, step: int) -> bool:
        """Show the history entry ``step`` away from the one shown (past the newest: the draft); False when
        there is none that way, so the key does its usual job."""
        entries = self.sent
        if self._recalled is None:
            if step > 0 or not entries:
                return False
            self._draft = self.text
            index = len(entries) - 1
        else:
            index = self._recalled + step
            if index < 0:
                return False
        if index >= len(entries):
            self._recalled = None
            self.value = self._draft
        else:
            self._recalled = index
            self.value = entries[index]
        return True
