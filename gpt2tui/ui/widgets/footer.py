"""Textual's footer, with its keys in the screen's first frame and rebuilt only when they change.

Textual's ``Footer`` composes no keys until its screen first reports a change of key bindings, then recomposes
(removes and mounts every key label, each styled from the whole stylesheet) after each ``refresh_bindings``:
the keys appear a frame after the screen, and a screen's start sends a burst of such reports (focus moves,
tables fill, the run list arrives; the home screen sent 15 before it went idle). This one composes its keys
at once, skips a report whose keys are those already shown, and keeps at most one rebuild pending (the keys
are read when it runs, so one rebuild after a burst shows the same keys as fifteen). Measured on the home
screen: from three footer builds (two of them a frame each after the first frame) to one, in the first frame.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    """A ``Footer`` drawn with its first frame, rebuilt only for other keys, one rebuild pending at a time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rebuild_pending = False
        self._shown: Hashable = None  # the bindings the labels were composed from

    def compose(self) -> ComposeResult:
        # Textual's footer composes nothing until the first report of changed bindings, a frame later; the
        # screen's bindings can be read as soon as the footer is mounted in it.
        self._bindings_ready = True
        self._shown = self._drawn_from()
        yield from super().compose()

    def _drawn_from(self) -> Hashable:
        """What the labels are drawn from: every active binding (the palette's too), enabled, tooltip."""
        return tuple(
            (binding, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
        )

    def bindings_changed(self, screen: Screen) -> None:
        if self._rebuild_pending:
            return  # the pending rebuild reads the bindings as they are when it runs
        current = self.is_attached and screen is self.screen
        if current and self._drawn_from() == self._shown:
            return  # the same keys as drawn
        super().bindings_changed(screen)
        # Textual schedules the rebuild only in this case (otherwise nothing is pending).
        self._rebuild_pending = bool(screen.app.app_focus and current)

    async def recompose(self) -> None:
        self._rebuild_pending = False
        await super().recompose()
