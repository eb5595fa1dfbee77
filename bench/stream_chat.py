"""Streaming through the chat screen against raw ``model.generate``: tokens/s, first character, UI cost.

One model (a GPT-2 of the ``small`` scratch shape, untrained, with ``n_positions`` large enough for the longest
reply and a byte-level BPE trained on ``sample_data/kjv_sample.txt``), one prompt, greedy decoding and
``min_new_tokens == max_new_tokens`` so every reply has exactly N tokens. Measured in one process, the
reference and ours interleaved, each repeated (median):

* reference: ``model.generate(ids, max_new_tokens=N)`` under ``torch.inference_mode``, no streamer, called
  from a new thread as the chat calls it (see ``in_a_thread``);
  ours: the same reply typed into the chat screen (raw mode) of a headless app (``App.run_test``), from the
  submitted prompt until the last token's text has been appended to the transcript. Tokens/s = N / seconds.
* first character: reference = ``generate`` with ``max_new_tokens=1`` (prefill + first token); ours = from
  the submitted prompt until the first visible reply character is appended to the transcript.
* UI cost: CPU time of the UI thread (``time.thread_time()`` read in that thread, at each flush into the
  transcript), per 1,000 tokens reaching the transcript: the first thousand against the last; and per flush
  (the flush timer's append and repaint), since a slower generator (attention grows with the context) means
  more flushes per 1,000 tokens at the end of a long reply. Token counts are mapped to character offsets of the (deterministic, greedy) reference text. The generating threads
  (``generate`` and the stream consumer) are not the UI thread, so this is what drawing the reply costs.

Both run in this one process with the same torch thread count: by default the one ``gpt2tui generate``
would choose now (the cores no other process keeps busy, ``core.device``), or ``--threads N``. The load
average is printed before and after: on a shared machine, compare runs only at similar load.

Run: ``python bench/stream_chat.py`` (``--tokens 1000 4000 --repeats 3`` by default; ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the checkout this script is in, not another install of gpt2tui
CORPUS = ROOT / "sample_data" / "kjv_sample.txt"
PROMPT = "In the beginning God created the heaven and the earth. And the earth was"
SIZE = (120, 40)


def build(max_tokens: int) -> Any:
    """The ``small`` scratch shape with room for ``max_tokens`` new tokens after the prompt."""
    from gpt2tui.core.card import ModelMetadata
    from gpt2tui.core.generation import LoadedModel
    from gpt2tui.core.models import build_scratch

    model, tokenizer = build_scratch(
        [CORPUS.read_text(encoding="utf-8")], "small", 0, n_positions=max_tokens + 200
    )
    model.eval()
    return LoadedModel("bench", ROOT, model, tokenizer, ModelMetadata())


def generate_kwargs(loaded: Any, tokens: int) -> dict[str, Any]:
    """What ``core.generation`` passes for greedy, plus ``min_new_tokens`` so the reply has ``tokens``."""
    from gpt2tui.core.generation import GenerationSettings

    kwargs = GenerationSettings(strategy="greedy", max_new_tokens=tokens).generate_kwargs()
    eos = loaded.tokenizer.eos_token_id
    return {**kwargs, "min_new_tokens": tokens, "pad_token_id": eos, "eos_token_id": eos}


def in_a_thread(call: Callable[[], Any]) -> Any:
    """``call()`` in a new thread, as the chat runs ``generate``: both sides then compute from a thread.

    On a loaded machine, torch's spinning OpenMP threads made ``generate`` from the main thread 4-5x slower
    than the same call from a new thread (2 threads; no difference with 1 thread or with passive waiting),
    which would flatter the chat's ratio; measured from a thread, the reference has no such handicap.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        result["value"] = call()

    thread = threading.Thread(target=run, name="bench-reference")
    thread.start()
    thread.join()
    return result["value"]


def reference(loaded: Any, tokens: int) -> tuple[float, list[int], float]:
    """Seconds for raw ``generate`` of ``tokens`` tokens, the ids, and the process CPU seconds."""
    import torch

    ids = torch.tensor([loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    kwargs = generate_kwargs(loaded, tokens)

    def generate() -> Any:
        with torch.inference_mode():
            return loaded.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)

    cpu = time.process_time()
    started = time.perf_counter()
    out = in_a_thread(generate)
    seconds = time.perf_counter() - started
    return seconds, out[0, ids.shape[1] :].tolist(), time.process_time() - cpu


def reference_first_token(loaded: Any) -> float:
    """Prefill + first token: ``generate`` with ``max_new_tokens=1``."""
    import torch

    ids = torch.tensor([loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    kwargs = {**generate_kwargs(loaded, 1)}

    def generate() -> Any:
        with torch.inference_mode():
            return loaded.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)

    started = time.perf_counter()
    in_a_thread(generate)
    return time.perf_counter() - started


def through_chat(loaded: Any, tokens: int, offsets: list[int]) -> dict[str, Any]:
    """One reply through the chat screen: seconds to the last token, to the first character, UI CPU marks."""
    from textual.app import App, ComposeResult
    from textual.widgets import Input, Static

    from gpt2tui.core.generation import GenerationSettings
    from gpt2tui.ui.screens import chat as chat_module
    from gpt2tui.ui.screens.chat import ChatScreen

    marks: dict[str, Any] = {"ui_cpu": [], "flushes": [], "first": None, "done": None}
    flushes = 0
    total_chars = offsets[-1]

    class Measured(ChatScreen):
        """The chat screen, timing the moments text reaches its transcript (in the UI thread)."""

        CSS_PATH = str(
            Path(chat_module.__file__).with_name("chat.tcss")
        )  # relative paths follow the subclass

        def _start_reply(self, turn: Any) -> None:
            marks["start"] = time.perf_counter()
            marks["start_cpu"] = time.thread_time()
            super()._start_reply(turn)

        def _flush(self) -> None:
            nonlocal flushes
            flushes += 1
            super()._flush()
            turn = self.turns[-1] if self.turns else None
            if turn is None or turn.waiting:
                return
            now = time.perf_counter()
            if marks["first"] is None:
                marks["first"] = now
            shown = len(turn.text)
            cpu = marks["ui_cpu"]
            while len(cpu) < len(offsets) and shown >= offsets[len(cpu)]:
                cpu.append(time.thread_time())
                marks["flushes"].append(flushes)
            if marks["done"] is None and shown >= total_chars:
                marks["done"] = now

    settings = GenerationSettings(strategy="greedy", max_new_tokens=tokens)
    screen = Measured("bench", settings, loaded=loaded, mode="raw")

    class Bench(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("home")

        def on_mount(self) -> None:
            self.push_screen(screen)

    async def drive() -> None:
        app = Bench()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            screen.query_one("#prompt", Input).value = PROMPT
            await pilot.press("enter")
            while marks["done"] is None or screen.active is not None:
                await asyncio.sleep(0.05)

    loaded.model.generation_config.min_new_tokens = tokens  # every reply has exactly ``tokens`` tokens
    cpu = time.process_time()
    try:
        asyncio.run(drive())
    finally:
        loaded.model.generation_config.min_new_tokens = None
    marks["process_cpu"] = time.process_time() - cpu
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1000, 4000], help="reply lengths")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (median reported)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both (default: gpt2tui's free-core policy)",
    )
    args = parser.parse_args()

    from gpt2tui.core.device import configure_threads

    plan = configure_threads(args.threads)  # before torch loads, as ``gpt2tui generate`` does
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; threads: {plan.describe()}")
    import torch

    from gpt2tui.core.quiet import quiet_environment, quiet_transformers

    quiet_environment()
    quiet_transformers()
    loaded = build(max(args.tokens))
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, cores {os.cpu_count()}, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"model: small shape, {params / 1e6:.1f} M parameters, n_positions {loaded.context_length}")
    reference(loaded, 8)  # warm-up (first calls allocate)
    through_chat(loaded, 8, [len(loaded.tokenizer.decode(reference(loaded, 8)[1]))])

    first_ref, first_ours = [], []
    for tokens in args.tokens:
        ref_rates, our_rates, ref_cpu, our_cpu, ui_first, ui_last = [], [], [], [], [], []
        per_flush_first, per_flush_last = [], []
        for _ in range(args.repeats):
            seconds, ids, cpu = reference(loaded, tokens)
            ref_rates.append(tokens / seconds)
            ref_cpu.append(cpu)
            first_ref.append(reference_first_token(loaded))
            # Character offsets of the reply at every 1,000 tokens (and at the end).
            cuts = [*range(1000, tokens, 1000), tokens]
            offsets = [len(loaded.tokenizer.decode(ids[:cut], skip_special_tokens=True)) for cut in cuts]
            marks = through_chat(loaded, tokens, offsets)
            our_rates.append(tokens / (marks["done"] - marks["start"]))
            first_ours.append(marks["first"] - marks["start"])
            our_cpu.append(marks["process_cpu"])
            ui = [marks["start_cpu"], *marks["ui_cpu"]]
            spans = zip(ui[:-1], ui[1:], [0, *cuts[:-1]], cuts, strict=True)
            per_thousand = [(b - a) * 1000 / (cb - ca) for a, b, ca, cb in spans]
            ui_first.append(per_thousand[0])
            ui_last.append(per_thousand[-1])
            # The flush runs at a fixed rate whatever the token rate: per flush is the cost of one append.
            counts = [0, *marks["flushes"]]
            per_flush = [
                (b - a) / max(1, fb - fa)
                for a, b, fa, fb in zip(ui[:-1], ui[1:], counts[:-1], counts[1:], strict=True)
            ]
            per_flush_first.append(per_flush[0])
            per_flush_last.append(per_flush[-1])
        ref, ours = statistics.median(ref_rates), statistics.median(our_rates)
        print(
            f"\n{tokens} tokens (median of {args.repeats}; runs: "
            f"ref {', '.join(f'{r:.0f}' for r in ref_rates)}; ours {', '.join(f'{r:.0f}' for r in our_rates)})"
        )
        print(
            f"  tokens/s   reference (raw generate) {ref:8.1f}   ours (chat screen) {ours:8.1f}   "
            f"ratio {ours / ref:.3f}x"
        )
        print(
            f"  process CPU s  reference {statistics.median(ref_cpu):6.2f}   ours {statistics.median(our_cpu):6.2f}"
        )
        print(
            f"  UI thread CPU ms per 1,000 tokens: first thousand {statistics.median(ui_first) * 1000:7.1f}   "
            f"last thousand {statistics.median(ui_last) * 1000:7.1f}   "
            f"ratio {statistics.median(ui_last) / statistics.median(ui_first):.2f}x"
        )
        first_flush, last_flush = statistics.median(per_flush_first), statistics.median(per_flush_last)
        print(
            f"  UI thread CPU ms per flush:          first thousand {first_flush * 1000:7.2f}   "
            f"last thousand {last_flush * 1000:7.2f}   ratio {last_flush / first_flush:.2f}x"
        )
    ref_first, our_first = statistics.median(first_ref), statistics.median(first_ours)
    print(
        f"\nfirst character: reference (prefill + first token) {ref_first * 1000:6.1f} ms   "
        f"ours (first visible character in the transcript) {our_first * 1000:6.1f} ms   "
        f"ratio {our_first / ref_first:.2f}x"
    )
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
