"""Text from a model or a data file, made safe for a terminal: control characters become the symbols for them.

Sent to a terminal raw, an escape (0x1b) starts a sequence the terminal obeys: an untrained model's reply
moved the cursor and broke the chat pane's border, and an 8-bit CSI (0x9b) does the same on terminals that
read it; ``gpt2tui generate`` printed such replies as they came. Each control is shown as one visible symbol
instead (``␛``, ``␇``, ``␍``, ``␡``; C1 controls as ``�``), so the text keeps its length and a style's spans
still fit. Newlines and tabs are the text's own and stay.
"""

from __future__ import annotations

VISIBLE_CONTROLS = str.maketrans(
    {
        **{code: chr(0x2400 + code) for code in range(0x20) if code not in (0x09, 0x0A)},
        0x7F: "\u2421",
        **{code: "\ufffd" for code in range(0x80, 0xA0)},
    }
)


def readable(text: str) -> str:
    """``text`` with the bytes that were not UTF-8 (a file name's, a command-line argument's: Python holds them
    as lone surrogates, which UTF-8 cannot write and no tokenizer takes) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def visible(text: str) -> str:
    """``text`` with its control characters (but newlines and tabs) as visible symbols, one for one."""
    return text.translate(VISIBLE_CONTROLS)
