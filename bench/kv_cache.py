"""Raw ``model.generate`` with transformers' own key/value cache against the growing cache the core uses.

The same model, prompt and greedy settings as ``bench/stream_chat.py`` (the ``small`` scratch shape,
untrained, ``min_new_tokens`` = N so every reply has exactly N tokens); the only difference is
``past_key_values=growing_cache(model)`` (``core/kv_cache.py``). Both run in a new thread of this process,
interleaved, and the median of each is reported with the ratio; the replies' token ids are compared (they
must be identical). The default cache concatenates every layer's keys and values at every token, so its cost
per token grows with the reply; the growing cache writes in place.

Run: ``python bench/kv_cache.py`` (``--tokens 1000 4000 --repeats 3`` by default; ``--help``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_chat import PROMPT, generate_kwargs, in_a_thread, load_average, prepare  # noqa: E402


def run(loaded: Any, tokens: int, growing: bool) -> tuple[float, list[int]]:
    """Tokens per second of one greedy reply, and its ids."""
    import torch

    from gpt2tui.core.kv_cache import growing_cache

    ids = torch.tensor([loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    kwargs = generate_kwargs(loaded, tokens)

    def generate() -> Any:
        extra = {"past_key_values": growing_cache(loaded.model)} if growing else {}
        with torch.inference_mode():
            return loaded.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs, **extra)

    started = time.perf_counter()
    out = in_a_thread(generate)
    return tokens / (time.perf_counter() - started), out[0, ids.shape[1] :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1000, 4000], help="reply lengths")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (median reported)")
    args = parser.parse_args()

    loaded = prepare(None, max(args.tokens))
    run(loaded, 8, False)  # warm-up
    run(loaded, 8, True)
    for tokens in args.tokens:
        rates: dict[bool, list[float]] = {False: [], True: []}
        same = True
        for _ in range(args.repeats):
            reference, reference_ids = run(loaded, tokens, False)
            ours, our_ids = run(loaded, tokens, True)
            rates[False].append(reference)
            rates[True].append(ours)
            same = same and reference_ids == our_ids
        ref, grown = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"\n{tokens} tokens, median of {args.repeats}")
        print(
            f"  reference: generate's own cache  {ref:7.1f} tok/s  (runs {', '.join(f'{r:.0f}' for r in rates[False])})"
        )
        print(
            f"  ours: the growing cache          {grown:7.1f} tok/s  (runs {', '.join(f'{r:.0f}' for r in rates[True])})"
        )
        print(f"  ratio {grown / ref:.3f}x; identical token ids in every run: {same}")
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
