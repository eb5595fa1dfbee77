"""The core's sentences in a screen's own terms.

The core's errors end with the CLI's advice ("use --block-size 64 or less", "delete it with 'gpt2tui models rm
tiny'"). A screen fixes the same problems with its own fields and keys, so it gives its own advice for the
problems it can fix (``UserError.fix``) and keeps the core's sentence for every other one.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpt2tui.core.errors import UserError
from gpt2tui.core.runs import RESUME_ADVICE

Advice = Mapping[str, str]
"""Per ``UserError.fix`` key, how this screen fixes it: a clause that may name ``UserError.details`` fields."""


def in_screen_terms(err: UserError, advice: Advice) -> str:
    """``err`` as one sentence ending with this screen's advice, or the core's own sentence when the screen
    has no advice for it."""
    clause = advice.get(err.fix or "")
    if err.problem is None or clause is None:
        return str(err)
    try:
        return f"{err.problem}; {clause.format(**err.details)}."
    except (KeyError, IndexError):  # advice naming a detail this error lacks: the core's sentence is right
        return str(err)


def failure_in_app(message: str, run_id: str) -> str:
    """A run's failure sentence without the CLI's resume command (the screens offer their r key instead)."""
    return message.replace("; " + RESUME_ADVICE.format(run=run_id), "")


def count_of_rows(file_format: str | None, rows: int) -> str:
    """How many examples a file gave, in its own unit: a text file is split into paragraphs, not rows."""
    unit = "paragraph" if file_format == "txt" else "row"
    return f"{rows:,} {unit}{'' if rows == 1 else 's'}"
