"""One line that always says what the chat will do next: model, mode, decoding settings, last speed.

The tokens/s of the last reply and the state ("generating…", "stopped") sit right-aligned in their own column,
so they are never the part a narrow terminal cuts. When the line is too long for the width, it gives up, in
this order: the "(T=… unused)" hint, the word "mode", then characters of the model name (ellipsised), then
the mode itself, then the state (the transcript shows it too: "thinking…", the text streaming in). At 80
columns or more the strategy and its parameters are always shown whole; narrower (two panes side by side at 80
columns have 38 each), the strategy and the first of its parameters stay and the rest is cut.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from gpt2tui.core.generation import GenerationSettings

USES_TEMPERATURE = ("top-k", "top-p")
SEPARATOR = " · "
GAP = 2  # at least this many spaces between the left part and the right-aligned column
MIN_MODEL_CHARS = 4  # the model name is never shortened below this (plus the ellipsis)
SHORTEST_MODEL = "x" * (MIN_MODEL_CHARS + 1)  # as long as a model name's shortest ellipsised form


def describe_settings(settings: GenerationSettings, *, unused_hint: bool = True) -> str:
    """``settings.describe()``, plus the temperature when the strategy ignores it (so F6/F7 stay visible)."""
    text = settings.describe()
    if unused_hint and settings.strategy not in USES_TEMPERATURE:
        text += f" (T={settings.temperature:.2f} unused)"
    return text


def ellipsise(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis when anything was cut."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


class StatusLine(Widget):
    """``model · mode · strategy and parameters``, then right-aligned ``state · tokens/s of the last reply``."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text;
    }
    """

    model_name: reactive[str] = reactive("")
    mode: reactive[str] = reactive("chat")
    settings: reactive[GenerationSettings] = reactive(GenerationSettings)
    tokens_per_second: reactive[float | None] = reactive(None)
    state: reactive[str] = reactive("")

    @property
    def plain(self) -> str:
        """The text as shown at the current width (everything, before the widget is laid out)."""
        return self._text().plain

    def _right(self, with_state: bool = True) -> Text:
        speed = "–" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f}"
        text = Text()
        if self.state and with_state:
            text.append(self.state, style="italic")
            text.append(SEPARATOR, style="dim")
        text.append(f"{speed} tok/s")
        return text

    def _left(self, room: int | None) -> Text:
        """Model, mode and settings in at most ``room`` characters when that is possible (None: no limit)."""
        model = self.model_name or "no model"
        mode_style = "bold magenta" if self.mode == "raw" else "bold"
        long_mode, short_mode = f"{self.mode} mode", self.mode
        full, bare = describe_settings(self.settings), describe_settings(self.settings, unused_hint=False)
        candidates = [(long_mode, full), (long_mode, bare), (short_mode, bare)]
        mode, settings = candidates[-1]
        for mode_text, settings_text in candidates:
            if room is None or len(SEPARATOR.join((model, mode_text, settings_text))) <= room:
                mode, settings = mode_text, settings_text
                break
        else:
            assert room is not None
            if len(SEPARATOR.join((SHORTEST_MODEL, mode, settings))) > room:
                mode = ""  # the settings matter more: prompts are labelled "you ▸" or "raw ▸" by mode
            fixed = len(SEPARATOR.join(("", mode, settings) if mode else ("", settings)))
            model = ellipsise(model, max(room - fixed, MIN_MODEL_CHARS + 1))
        text = Text()
        text.append(model, style="bold")
        text.append(SEPARATOR, style="dim")
        if mode:
            text.append(mode, style=mode_style)
            text.append(SEPARATOR, style="dim")
        text.append(settings)
        return text

    def _text(self) -> Text:
        right = self._right()
        width = self.size.width  # the content area, padding excluded
        if width <= 0:
            left = self._left(None)
            return Text.assemble(left, " " * GAP, right)
        room = width - GAP - right.cell_len
        if self.state and room < self._strategy_room():
            right = self._right(with_state=False)
            room = width - GAP - right.cell_len
        left = self._left(room)
        if left.cell_len > room:  # narrower than 80 columns: cut the left part, keep the right column
            left.truncate(max(room, 1), overflow="ellipsis")
        padding = max(width - left.cell_len - right.cell_len, GAP)
        return Text.assemble(left, " " * padding, right, no_wrap=True, overflow="ellipsis")

    def _strategy_room(self) -> int:
        """The width the left part needs to show a shortened model name and the strategy's name and first
        parameter (below it, the state gives up its room)."""
        first = " ".join(describe_settings(self.settings, unused_hint=False).split(" ")[:2])
        return len(SEPARATOR.join((SHORTEST_MODEL, first)))

    def render(self) -> Text:
        return self._text()
