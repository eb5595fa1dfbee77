"""The one exception type whose message is shown to the user as is."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is one clear sentence (the CLI exits 2 with it)."""
