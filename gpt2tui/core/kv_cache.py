"""A key/value cache for generation that grows by doubling instead of concatenating at every token.

``generate``'s default ``DynamicCache`` appends each new token's keys and values with ``torch.cat``, which
copies the whole cache of every layer at every token: O(n) bytes per token, O(n^2) per reply. For the chat's
``small`` model that is 73 MB copied per token at 4,000 tokens of context. This cache keeps each layer's keys
and values in a buffer with room to spare and writes the new positions in place; attention reads a view of
the filled part. A buffer that fills up is replaced by one twice as large (a copy every doubling, O(log n)
copies a reply). The numbers are the same: the same values reach the same attention kernel, so greedy replies
are token for token those of the default cache (``bench/kv_cache.py`` checks 4,000 tokens, the tests 300).
Measured on 2 AVX512 cores, the ``small`` scratch shape (``bench/kv_cache.py``): raw ``generate`` 1.08x
faster over 1,000 tokens, 1.13-1.23x over 4,000.

Used on the CPU (on a GPU the concatenation is an asynchronous device copy that the Python loop already
hides). ``GPT2TUI_KV_CACHE=default`` leaves ``generate`` its own cache; so does a transformers whose cache
classes are not the ones this was written against.
"""

from __future__ import annotations

from functools import cache
from typing import Any

KV_CACHE_ENV = "GPT2TUI_KV_CACHE"
"""``default``: generate with transformers' own cache (the off switch of :func:`growing_cache`)."""
MIN_CAPACITY = 64
"""Positions a layer's first buffer holds at least (a prompt of a few tokens still gets room to grow)."""


def growing_cache(model: Any, limit: int | None = None) -> Any | None:
    """A cache for one ``generate`` call of ``model`` whose layers grow in place, or None to use the default.

    ``limit`` bounds a buffer's positions (the prompt plus the new tokens), so doubling never reserves more
    than the reply can use.
    """
    from gpt2tui.core.device import switched_off

    if switched_off(KV_CACHE_ENV):
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        kv = DynamicCache(config=model.config)
        layer = growing_layer()
        if not kv.layers or any(type(existing) is not DynamicLayer for existing in kv.layers):
            return None  # sliding windows, hybrid or offloaded layers: leave them to transformers
        kv.layers = [layer(limit) for _ in kv.layers]
        return kv
    except (ImportError, AttributeError, TypeError):
        return None


def reserve(kv: Any, limit: int) -> None:
    """Let ``kv``'s growing layers double up to ``limit`` positions (a kept cache reused by a longer reply:
    under the old limit each new token past it would reallocate)."""
    for layer in getattr(kv, "layers", ()):
        if isinstance(layer, growing_layer()):
            layer.limit = limit


def plain_cache(model: Any) -> Any | None:
    """The cache ``generate`` would make itself (where :func:`growing_cache` gives none), made here so that
    it can be kept after the generation (``core.prompt_cache``); None where it cannot be made."""
    try:
        from transformers.cache_utils import DynamicCache

        return DynamicCache(config=model.config)
    except (ImportError, AttributeError, TypeError):  # a model whose config is not a transformers one
        return None


@cache
def growing_layer() -> type[Any]:
    """The ``DynamicLayer`` subclass (built once: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):  # type: ignore[misc]
        """Keys and values in buffers with spare room; ``keys``/``values`` are views of their filled part.

        Everything ``DynamicLayer`` does to ``keys``/``values`` (crop, reorder for beams, repeat for a batch)
        still works on them: a crop leaves a shorter view of the same buffer, which the next update writes
        after; any other replacement is noticed (the view no longer starts the buffer) and copied into a new
        buffer.
        """

        def __init__(self, limit: int | None = None) -> None:
            super().__init__()
            self.limit = limit
            self.key_buffer: Any = None
            self.value_buffer: Any = None
            self.reallocations = 0  # how many buffers were made (tests read it: O(log n) a reply)

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.keys.shape[-2] if self.keys.numel() else 0
            end = length + key_states.shape[-2]
            if not self._fits(end):
                self._grow(key_states, value_states, length, end)
            self.key_buffer[..., length:end, :].copy_(key_states)
            self.value_buffer[..., length:end, :].copy_(value_states)
            self.keys = self.key_buffer[..., :end, :]
            self.values = self.value_buffer[..., :end, :]
            return self.keys, self.values

        def _fits(self, end: int) -> bool:
            """The buffers exist, have room up to ``end``, and ``keys`` is still a view of them."""
            buffer = self.key_buffer
            if buffer is None or end > buffer.shape[-2]:
                return False
            return not self.keys.numel() or self.keys.data_ptr() == buffer.data_ptr()

        def _grow(self, key_states: Any, value_states: Any, length: int, end: int) -> None:
            old = self.key_buffer.shape[-2] if self.key_buffer is not None else 0
            capacity = max(end, MIN_CAPACITY, 2 * old)
            if self.limit is not None:
                capacity = max(end, min(capacity, self.limit))
            keys = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
            if length:
                keys[..., :length, :].copy_(self.keys)
                values[..., :length, :].copy_(self.values)
            self.key_buffer, self.value_buffer = keys, values
            self.reallocations += 1

        def reset(self) -> None:
            super().reset()
            self.key_buffer = self.value_buffer = None

    return GrowingLayer
