"""Keep the last reply's keys and values, so that a prompt starting the same way computes only what is new.

In chat mode every turn's prompt is the whole conversation so far, and an OpenAI client sends the whole
conversation with every request: without this, each reply computed every earlier turn again before its first
token (GPT-2 124M on 2 CPU threads: 0.7 s for a 500-token conversation, however short the new message). Like
llama.cpp's server (``cache_prompt``), a model keeps the cache of its last generation with the token ids it
holds; the next generation keeps the longest prefix its prompt shares with them and computes the rest.
Nothing needs invalidating: the match is on token ids, so an edited, cleared or undone conversation, a
different strategy or a trimmed context simply shares a shorter prefix (often none). At least the prompt's
last token is always computed: ``generate`` needs its logits.

The kept positions hold the values computed when they were first seen, one token at a time for a reply's
tokens; computed again as part of a prompt they could differ in the last bits of a float (batched matrix
products round differently), so a seeded reply matches a fresh process's token for token except where two
tokens tie to within rounding, as with llama.cpp. ``GPT2TUI_PROMPT_CACHE=default`` computes every prompt in
full (the off switch). The cache costs memory while the model is loaded: at most the context's keys and
values (GPT-2 124M, 1,024 positions: 75 MB in fp32).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

PROMPT_CACHE_ENV = "GPT2TUI_PROMPT_CACHE"
"""``default``: compute every prompt in full, keeping nothing between generations (the off switch)."""


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` have in common."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PromptCache:
    """One model's last key/value cache and the token ids it holds; one generation uses it at a time.

    :meth:`take` hands the cache out (and forgets it), :meth:`store` puts one back after a generation ended
    normally: a generation that failed or was abandoned mid-way never leaves a cache whose contents are
    unknown, and two generations at once (the server's queue makes them one at a time anyway) never share one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kv: Any = None
        self._ids: list[int] = []

    def take(self, ids: Sequence[int]) -> tuple[Any, int]:
        """The stored cache cut to the longest prefix it shares with ``ids`` (never all of ``ids``) and that
        prefix's length; ``(None, 0)`` when nothing is shared or the cache is switched off."""
        from gpt2tui.core.device import switched_off

        with self._lock:
            kv, held = self._kv, self._ids
            self._kv, self._ids = None, []
        if kv is None or switched_off(PROMPT_CACHE_ENV):
            return None, 0
        keep = shared_prefix(held, ids[:-1])
        if keep == 0:
            return None, 0
        surplus = kv.get_seq_length() - keep
        if surplus > 0:
            try:
                kv.crop(-surplus)
            except (ValueError, TypeError, AttributeError):  # a transformers whose crop works otherwise
                return None, 0
        return kv, keep

    def store(self, ids: Sequence[int], kv: Any) -> None:
        """Keep ``kv``, which holds the keys and values of the first positions of ``ids`` (a generation's
        prompt and reply: its last token was never computed)."""
        from gpt2tui.core.device import switched_off

        if switched_off(PROMPT_CACHE_ENV):
            return
        length = kv.get_seq_length()
        with self._lock:
            self._kv, self._ids = kv, list(ids[:length])

    def clear(self) -> None:
        """Free the memory the cache holds."""
        with self._lock:
            self._kv, self._ids = None, []

    @property
    def held(self) -> int:
        """How many positions the stored cache holds (0: none stored)."""
        with self._lock:
            return len(self._ids)
