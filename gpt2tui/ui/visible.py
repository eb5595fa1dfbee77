"""Styled text from a model or a data file, made safe to draw (``core.visible`` for why): control characters
become the symbols for them, the styles kept. rich counts the controls as zero cells wide, which not every
terminal agrees with."""

from __future__ import annotations

from rich.text import Text

from gpt2tui.core.visible import VISIBLE_CONTROLS, visible

__all__ = ["VISIBLE_CONTROLS", "visible", "visible_text"]


def visible_text(text: Text) -> Text:
    """``text`` (unchanged when it has no controls) or a copy with them as symbols, its styles kept."""
    shown = visible(text.plain)
    if shown == text.plain:
        return text
    copy = text.copy()
    copy.plain = shown
    return copy
