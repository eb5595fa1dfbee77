"""Textual's footer, rebuilt once per burst of key binding changes instead of once per change.

Textual's ``Footer`` recomposes (removes and mounts every key label, each styled from the whole stylesheet)
after each ``refresh_bindings`` of its screen. A screen's start sends a burst of them (focus moves, tables
fill, the run list arrives): the home screen sent 15 before it went idle, which took longer than drawing the
first frame. The keys are read when the recompose runs, so one recompose after the burst shows the same
keys as fifteen.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """A ``Footer`` with at most one rebuild pending at a time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rebuild_pending = False

    def bindings_changed(self, screen: Screen) -> None:
        if self._rebuild_pending:
            return  # the pending rebuild reads the bindings as they are when it runs
        super().bindings_changed(screen)
        # Textual schedules the rebuild only in this case (otherwise nothing is pending).
        self._rebuild_pending = bool(screen.app.app_focus and self.is_attached and screen is self.screen)

    async def recompose(self) -> None:
        self._rebuild_pending = False
        await super().recompose()
