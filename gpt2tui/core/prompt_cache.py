"""Keep the last replies' keys and values, so that a prompt starting the same way computes only what is new.

In chat mode every turn's prompt is the whole conversation so far, and an OpenAI client sends the whole
conversation with every request: without this, each reply computed every earlier turn again before its first
token (GPT-2 124M on 2 CPU threads: 0.7 s for a 500-token conversation, however short the new message). Like
llama.cpp's server (``cache_prompt``), a model keeps the cache of its last generation with the token ids it
holds; the next generation keeps the longest prefix its prompt shares with them and computes the rest.
Nothing needs invalidating: the match is on token ids, so an edited, cleared or undone conversation, a
different strategy or a trimmed context simply shares a shorter prefix (often none). At least the prompt's
last token is always computed: ``generate`` needs its logits. A conversation longer than the context loses
its oldest turn at every turn, so its prompt starts differently each time and shares almost nothing: GPT-2's
positions are absolute, so kept keys cannot be shifted to new positions as llama.cpp shifts RoPE's.

The kept positions hold the values computed when they were first seen, one token at a time for a reply's
tokens; computed again as part of a prompt they could differ in the last bits of a float (batched matrix
products round differently), so a seeded reply matches a fresh process's token for token except where two
tokens tie to within rounding, as with llama.cpp. ``GPT2TUI_PROMPT_CACHE=default`` computes every prompt in
full (the off switch). A kept cache costs memory while the model is loaded: at most the context's keys and
values (GPT-2 124M, 1,024 positions: 75 MB in fp32). The chat keeps one, ``gpt2tui serve`` one for each
interleaved conversation (``--prompt-caches``, 4 by default).
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


SERVE_CACHES = 4
"""Caches ``gpt2tui serve`` keeps per model (``--prompt-caches``): one per conversation that interleaves with
others, as llama.cpp's slots; one would be pushed out by each other client's request."""


class PromptCache:
    """A model's kept key/value caches (the last ``capacity`` generations') and the token ids each holds; one
    generation uses a cache at a time.

    :meth:`take` hands out the cache sharing the longest prefix with a prompt (and forgets it), :meth:`store`
    puts one back after a generation ended normally: a generation that failed or was abandoned mid-way never
    leaves a cache whose contents are unknown, and two generations at once never share one. The chat keeps
    one (one conversation); the server one per interleaved conversation.
    """

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: list[tuple[list[int], Any]] = []  # the least recently stored first

    def take(self, ids: Sequence[int]) -> tuple[Any, int]:
        """The kept cache to use for ``ids`` (:meth:`_choose`) cut to the prefix it shares with them (never all
        of ``ids``), and that prefix's length; ``(None, 0)`` when none is to be used or the cache is off."""
        from gpt2tui.core.device import switched_off

        if switched_off(PROMPT_CACHE_ENV):
            return None, 0
        with self._lock:
            at, keep = self._choose(ids)
            if at < 0:
                return None, 0
            _, kv = self._entries.pop(at)
        surplus = kv.get_seq_length() - keep
        if surplus > 0:
            try:
                kv.crop(-surplus)
            except (ValueError, TypeError, AttributeError):  # a transformers whose crop works otherwise
                return None, 0
        return kv, keep

    def _choose(self, ids: Sequence[int]) -> tuple[int, int]:
        """Which kept cache to use for ``ids`` (its index, -1: none) and the prefix kept of it.

        The one sharing the longest prefix, if that is most of the prompt or most of what it holds: a cache
        that shares only a first word (another client's conversation, which starts the same way) is left
        for its own conversation, unless it is the least recently kept and the new one will push it out
        anyway (always so with one cache). With no use for any, the one to be pushed out goes now, before
        this generation's cache is allocated.
        """
        shared = [shared_prefix(held, ids[:-1]) for held, _ in self._entries]
        best = max(range(len(shared)), key=shared.__getitem__, default=-1)
        if best >= 0 and shared[best] > 0:
            held = len(self._entries[best][0])
            if 2 * shared[best] >= min(len(ids), held):
                return best, shared[best]
        if self._entries and len(self._entries) >= self.capacity:
            if shared[0] > 0:
                return 0, shared[0]
            del self._entries[0]
        return -1, 0

    def store(self, ids: Sequence[int], kv: Any) -> None:
        """Keep ``kv``, which holds the keys and values of the first positions of ``ids`` (a generation's
        prompt and reply: its last token was never computed), pushing out the least recently kept."""
        from gpt2tui.core.device import switched_off

        if switched_off(PROMPT_CACHE_ENV) or self.capacity < 1:
            return
        length = kv.get_seq_length()
        with self._lock:
            self._entries.append((list(ids[:length]), kv))
            del self._entries[: -self.capacity]

    def clear(self) -> None:
        """Free the memory the caches hold."""
        with self._lock:
            self._entries.clear()

    @property
    def held(self) -> int:
        """How many positions the kept caches hold together (0: none kept)."""
        with self._lock:
            return sum(len(ids) for ids, _ in self._entries)
