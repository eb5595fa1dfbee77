"""The chat's decoding settings in one dialog: every setting typed exactly, where the chat's keys only step a
few of them, and each refusal said in the dialog's own words (its field names, never the CLI's options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import MAX_SEED, STRATEGIES, GenerationSettings, Strategy
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.text_field import TextField


@dataclass(frozen=True)
class Field:
    """One setting's input: the ``GenerationSettings`` attribute, the CLI option the core's sentences name it
    by (the input's id without the dashes), its label, and the name the panel's sentences use."""

    attr: str
    option: str
    label: str
    name: str = ""

    @property
    def id(self) -> str:
        return self.option.removeprefix("--")

    @property
    def called(self) -> str:
        return self.name or self.label


FIELDS = (
    Field("temperature", "--temperature", "Temperature"),
    Field("top_k", "--top-k", "Top-k"),
    Field("top_p", "--top-p", "Top-p"),
    Field("num_beams", "--num-beams", "Beams"),
    Field("repetition_penalty", "--repetition-penalty", "Repetition penalty"),
    Field("max_new_tokens", "--max-new-tokens", "Max new tokens"),
    Field("seed", "--seed", "Seed (blank: random each reply)", "Seed"),
)
WHOLE = frozenset({"top_k", "num_beams", "max_new_tokens", "seed"})
"""The settings typed as whole numbers; the others are any number."""
STRATEGY_PARAMETERS: dict[Strategy, tuple[str, ...]] = {
    "greedy": (),
    "beam": ("num_beams",),
    "top-k": ("temperature", "top_k"),
    "top-p": ("temperature", "top_p"),
}
"""The strategy-specific settings each strategy reads; the others are dimmed while it is chosen."""
STRATEGY_NOTES: dict[Strategy, str] = {
    "greedy": "uses no temperature, top-k, top-p, beams",
    "beam": "uses beams",
    "top-k": "uses temperature and top-k",
    "top-p": "uses temperature and top-p",
}


class BadField(Exception):
    """A field's value refused: the sentence to show, and the field to focus."""

    def __init__(self, field: Field, sentence: str) -> None:
        super().__init__(sentence)
        self.field = field
        self.sentence = sentence


class StrategyChoice(RadioSet):
    """A ``RadioSet`` whose arrow keys choose (Textual's move a cursor, and enter or space choose), so the
    strategy shown chosen is the one that applies; enter applies the panel, as in its inputs."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "screen.apply", "Apply", show=False, tooltip="Apply the settings"),
    ]
    choosing = False
    """Whether the arrows choose: not yet while ``RadioSet`` puts its cursor on the first button."""

    def on_mount(self) -> None:
        # This handler runs before ``RadioSet``'s own, which moves the cursor to the first button.
        self.call_later(self._start_on_choice)

    def _start_on_choice(self) -> None:
        for _ in range(max(self.pressed_index, 0)):
            super().action_next_button()
        self.choosing = True

    def action_next_button(self) -> None:
        super().action_next_button()
        if self.choosing:
            self.action_toggle_button()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        if self.choosing:
            self.action_toggle_button()


class SettingsPanel(ModalScreen[GenerationSettings | None]):
    """Edit all decoding settings at once; dismisses with the new, validated settings, or ``None`` on escape.

    A bad value keeps the panel open with one sentence under the fields and the cursor in the bad field.
    Inputs the chosen strategy does not use are dimmed, not disabled: a value typed there is kept for when
    the strategy changes.
    """

    CSS_PATH: ClassVar[list[str]] = ["dialogs.tcss", "settings_panel.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "apply", "Apply", tooltip="Apply the settings (as enter in a field does)"),
        Binding("escape", "cancel", "Cancel", tooltip="Close without changing the settings"),
    ]

    def __init__(self, settings: GenerationSettings, max_tokens_limit: int) -> None:
        super().__init__()
        self.settings = settings
        self.max_tokens_limit = max_tokens_limit

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label("Decoding settings for the next replies", id="title")
            with Horizontal(classes="field", id="strategy-row"):
                yield Label("Strategy", classes="field-label")
                with StrategyChoice(id="strategy", compact=True):
                    for strategy in STRATEGIES:
                        yield RadioButton(strategy, strategy == self.settings.strategy, compact=True)
            yield Static("", id="strategy-note")
            for field in FIELDS:
                with Horizontal(classes="field", id=f"{field.id}-row"):
                    yield Label(field.label, classes="field-label")
                    yield TextField(self._shown(field), id=field.id, compact=True, **self._hints(field))
            yield Static("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="apply", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
            yield Static("←/→: strategy   tab: next field   enter: apply   escape: cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self._show_strategy(self.settings.strategy)
        self.query_one("#strategy", RadioSet).focus()

    def _shown(self, field: Field) -> str:
        value = getattr(self.settings, field.attr)
        return "" if value is None else str(value)

    def _hints(self, field: Field) -> dict[str, str]:
        if field.attr == "max_new_tokens":
            return {"placeholder": f"1 to {self.max_tokens_limit}"}
        if field.attr == "seed":
            return {"placeholder": "random each reply"}
        return {}

    @property
    def strategy(self) -> Strategy:
        index = self.query_one("#strategy", RadioSet).pressed_index
        return STRATEGIES[index] if index >= 0 else self.settings.strategy

    @on(RadioSet.Changed, "#strategy")
    def strategy_changed(self) -> None:
        self._show_strategy(self.strategy)

    def _show_strategy(self, strategy: Strategy) -> None:
        self.query_one("#strategy-note", Static).update(Text(STRATEGY_NOTES[strategy]))
        used = STRATEGY_PARAMETERS[strategy]
        for field in FIELDS:
            tunes_strategy = any(field.attr in attrs for attrs in STRATEGY_PARAMETERS.values())
            row = self.query_one(f"#{field.id}-row", Horizontal)
            row.set_class(tunes_strategy and field.attr not in used, "unused")

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        error = self.query_one("#error", Static)
        try:
            settings = self.read()
        except BadField as bad:
            error.update(Text(bad.sentence))
            self.query_one(f"#{bad.field.id}", Input).focus()
            return
        error.update("")
        self.dismiss(settings)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def read(self) -> GenerationSettings:
        """The settings as the fields say, validated; :class:`BadField` names the first bad one."""
        values: dict[str, object] = {"strategy": self.strategy}
        for field in FIELDS:
            values[field.attr] = self._parse(field, self.query_one(f"#{field.id}", Input).value.strip())
        try:
            return self.settings.replace(**values).validate()
        except UserError as err:
            raise in_panel_terms(err) from None

    def _parse(self, field: Field, text: str) -> float | int | None:
        if field.attr == "seed":
            if not text:
                return None
            seed = whole_number(text)
            if seed is None or not 0 <= seed <= MAX_SEED:
                raise BadField(
                    field,
                    f"Seed must be blank (random) or a whole number from 0 to {MAX_SEED}, not '{text}'.",
                )
            return seed
        if field.attr == "max_new_tokens":
            count = whole_number(text)
            if count is None or not 1 <= count <= self.max_tokens_limit:
                shown = f"'{text}'" if text else "blank"
                raise BadField(
                    field,
                    f"Max new tokens must be a whole number from 1 to {self.max_tokens_limit}, not {shown}.",
                )
            return count
        shown = f"'{text}'" if text else "blank"
        if field.attr in WHOLE:
            value = whole_number(text)
            if value is None:
                raise BadField(field, f"{field.called} must be a whole number, not {shown}.")
            return value
        try:
            return float(text)
        except ValueError:
            raise BadField(field, f"{field.called} must be a number, not {shown}.") from None


def whole_number(text: str) -> int | None:
    """``text`` as a whole number (digits, an optional sign), or None."""
    try:
        return int(text)
    except ValueError:
        return None


def in_panel_terms(err: UserError) -> BadField:
    """The core's refusal (``--top-k must be at least 1, not 0.``) with the panel's field name for the option."""
    sentence = str(err)
    for field in FIELDS:
        if sentence.startswith(f"{field.option} "):
            return BadField(field, field.called + sentence[len(field.option) :])
    return BadField(FIELDS[0], sentence)  # not a field's (none today): said as is
