"""One line that always says what the chat will do next: model, mode, decoding settings, last speed."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from gpt2tui.core.generation import GenerationSettings

USES_TEMPERATURE = ("top-k", "top-p")


def describe_settings(settings: GenerationSettings) -> str:
    """``settings.describe()``, plus the temperature when the strategy ignores it (so F6/F7 stay visible)."""
    text = settings.describe()
    if settings.strategy not in USES_TEMPERATURE:
        text += f" (T={settings.temperature:.2f} unused)"
    return text


class StatusLine(Widget):
    """``model · mode · strategy and parameters · tokens/s of the last reply · state``."""

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
        return self._text().plain

    def _text(self) -> Text:
        speed = "–" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f}"
        parts: list[tuple[str, str]] = [
            (self.model_name or "no model", "bold"),
            (f"{self.mode} mode", "bold magenta" if self.mode == "raw" else "bold"),
            (describe_settings(self.settings), ""),
            (f"{speed} tok/s", ""),
        ]
        text = Text()
        for index, (part, style) in enumerate(parts):
            if index:
                text.append(" · ", style="dim")
            text.append(part, style=style)
        if self.state:
            text.append(" · ", style="dim")
            text.append(self.state, style="italic")
        return text

    def render(self) -> Text:
        return self._text()
