"""The heavy libraries (torch, transformers, datasets, accelerate), imported once, by one thread at a time.

The app imports them in a background thread after its first frame. A worker that needs them before that
import has finished must not import them concurrently: transformers' lazy module then raises
``AttributeError`` for names that are half set up. So every worker calls :func:`ensure_libraries` first: it
waits for an import in progress, or does it; afterwards it costs one uncontended lock.
"""

from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_seconds: list[float] = []


def ensure_libraries() -> float:
    """Import everything the core uses lazily; returns the seconds the first import took."""
    with _lock:
        if _seconds:
            return _seconds[0]
        started = time.perf_counter()
        import accelerate  # noqa: F401
        import datasets  # noqa: F401
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        from transformers import (  # noqa: F401 - resolve the lazy names the core uses, here, once
            AutoModelForCausalLM,
            AutoTokenizer,
            GenerationConfig,
            GPT2Config,
            GPT2LMHeadModel,
            PreTrainedTokenizerBase,
            PreTrainedTokenizerFast,
            get_linear_schedule_with_warmup,
        )

        from gpt2tui.core.device import freeze_heap
        from gpt2tui.core.quiet import quiet_datasets, quiet_transformers

        quiet_transformers()
        quiet_datasets()
        # The libraries' objects live as long as the app: no collection walks them again. Not collected first:
        # an import leaves little garbage, and a full collection here would hold the GIL ~0.2 s (Ctrl+Q waits).
        freeze_heap(collect=False)
        _seconds.append(time.perf_counter() - started)
        return _seconds[0]
