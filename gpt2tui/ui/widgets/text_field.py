"""Text boxes whose keys take effect in the order they were typed.

Textual inserts a typed character in the box's own key handler, but runs the box's editing keys (backspace,
delete, ctrl+u, the arrows...) as bindings only once the key event has bubbled up to the app. Each widget on
the way has its own message queue, so while a backspace travels up, the next character, forwarded straight to
the box, can be inserted first and then deleted instead. A tester saw it in tmux under load (a training run and
a test suite on 2 cores): twelve backspaces and then ``abcdefgh4`` left ``abcdef`` in 5 of 40 tries; holding
backspace to clear a line and typing straight away does the same (Textual issue #6605, open in 8.2.8).

:class:`KeysInOrder` runs the box's own non-priority binding for a key when the box handles that key, in its
queue's order; what runs is the binding the app would have found first for it (the focused widget leads the
binding chain, and priority bindings were checked before the key reached the box).
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widgets import Input


class KeysInOrder:
    """Mixin (before ``Input`` or ``TextArea``): the widget's own bindings run as its key events arrive."""

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable and await self._run_own_binding(event):
            return
        await super()._on_key(event)  # type: ignore[misc]

    async def _run_own_binding(self, event: events.Key) -> bool:
        widget: Any = self
        active = widget.screen.active_bindings.get(event.key)
        if active is None or active.node is not widget or active.binding.priority or not active.enabled:
            return False
        if not await widget.app.run_action(active.binding.action, widget):
            return False
        event.stop()
        event.prevent_default()
        return True


class TextField(KeysInOrder, Input):
    """The app's one-line text box: an ``Input`` whose editing keys keep their order with typed characters."""
