"""The one exception type whose message is shown to the user as is."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is one clear sentence (the CLI exits 2 with it).

    That sentence ends with the CLI's advice (``--block-size 64 or less``). When a screen of the TUI fixes the
    same problem its own way (a field, a key), the error also carries ``problem`` (the sentence without the
    advice), ``fix`` (what the user changes, a key such as ``"name_taken"`` or ``"block_size"``) and
    ``details`` (the values the advice needs), so the screen can finish the sentence in its own terms.
    """

    def __init__(
        self, message: str, *, problem: str | None = None, fix: str | None = None, **details: object
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.fix = fix
        self.details = details
