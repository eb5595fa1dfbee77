"""Two chat panes side by side (ctrl+b), both replying to one prompt: each pane's tokens/s and first character
against raw ``model.generate`` of the same reply alone, with the panes' child processes sharing the cores (the
default) and each keeping the threads it planned alone (``GPT2TUI_SHARE_CORES=default``, as before).

The model is ``bench/stream_chat.py``'s (the ``small`` scratch shape, untrained, greedy, every reply exactly
``--tokens`` tokens), saved to a folder that both panes load, each in its own child process, as the chat does
for two stored models. For each case a headless app (``App.run_test``) opens the chat on that folder, adds the
second pane, waits for both to load, then sends ``--replies`` prompts, each after 0.3 s of rest (a user pauses
before pressing Enter). Per pane and reply: tokens/s = tokens / (last token's text in the transcript - Enter),
and the first character's time from Enter; medians over panes and replies. The reference (raw ``generate``
from a new thread of this process, with the threads ``gpt2tui generate`` would choose now) is measured between
the cases, ``--replies`` times each: alone, not side by side, so a ratio says what each pane gets of what one
reply alone would get. The threads each pane's reply computed with (``Reply.threads``) are printed.

Run: ``python bench/split_chat.py`` (``--tokens 400 --replies 3 --repeats 2``; ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_chat import (
    SIZE,
    ask,
    host_app,
    load_average,
    measured_screen,
    prepare,
    reference,
    reference_first_token,
    save,
)

CASES = {"shared": None, "own plans": "default"}
"""Each case's GPT2TUI_SHARE_CORES (None: unset, the default)."""
REST = 0.3


def side_by_side(folder: Path, tokens: int, replies: int) -> list[dict[str, Any]]:
    """``replies`` prompts answered by two panes of the model in ``folder``, ``tokens`` each; per pane and
    reply: seconds to the first character and to the last token, tokens, threads."""
    from gpt2tui.core.generation import GenerationSettings
    from gpt2tui.ui.widgets.chat_pane import ChatPane, ReplyFinished

    enter = {"at": 0.0}
    results: list[dict[str, Any]] = []

    class MeasuredPane(ChatPane):
        """Times the first text reaching this pane's transcript and the reply's end."""

        def _flush(self) -> None:
            super()._flush()
            turn = self.active
            if turn is not None and not turn.waiting and "first" not in self.marks:
                self.marks["first"] = time.perf_counter() - enter["at"]

        def on_reply_finished(self, message: ReplyFinished) -> None:
            super().on_reply_finished(message)  # the last text reaches the transcript
            seconds = time.perf_counter() - enter["at"]
            reply = message.reply
            results.append(
                {**self.marks, "seconds": seconds, "tokens": reply.new_tokens, "threads": reply.threads}
            )
            self.marks["done"] = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.marks: dict[str, Any] = {}

    def entered(_: Any) -> None:
        enter["at"] = time.perf_counter()

    settings = GenerationSettings(strategy="greedy", max_new_tokens=tokens)
    screen = measured_screen(MeasuredPane, entered)(str(folder), settings, mode="raw")
    Bench = host_app(screen)

    async def drive() -> None:
        async with Bench().run_test(size=SIZE) as pilot:
            while screen.loaded is None:
                await asyncio.sleep(0.05)
            screen.add_pane(str(folder))
            while any(pane.loaded is None for pane in screen.panes):
                await asyncio.sleep(0.05)
            for _ in range(replies):
                for pane in screen.panes:
                    pane.marks = {}
                await pilot.pause()
                await ask(pilot, screen, REST)
                while not all(pane.marks.get("done") for pane in screen.panes):
                    await asyncio.sleep(0.02)
                await pilot.pause()

    asyncio.run(drive())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=400, help="the length of every reply")
    parser.add_argument("--replies", type=int, default=3, help="prompts sent in each run of a case")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case (interleaved)")
    args = parser.parse_args()

    from gpt2tui.core.device import SHARE_ENV
    from gpt2tui.core.prompt_cache import PROMPT_CACHE_ENV

    # Every reply repeats one prompt: with the prompt cache only its last token would be computed, while the
    # reference computes all of it. Both compute the whole prompt here.
    os.environ[PROMPT_CACHE_ENV] = "default"
    loaded = prepare(None, args.tokens, children_plan=True)
    ref_rates: list[float] = []
    ref_firsts: list[float] = []
    ours: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(loaded, Path(tmp) / "bench-model", args.tokens)
        reference(loaded, 8)  # warm-up
        for _ in range(args.repeats):
            for case, value in CASES.items():
                for _ in range(args.replies):
                    seconds, _, _ = reference(loaded, args.tokens)
                    ref_rates.append(args.tokens / seconds)
                    ref_firsts.append(reference_first_token(loaded, REST))
                if value is None:
                    os.environ.pop(SHARE_ENV, None)
                else:
                    os.environ[SHARE_ENV] = value  # the children read it when they share
                ours[case].extend(side_by_side(folder, args.tokens, args.replies))
        os.environ.pop(SHARE_ENV, None)
    med = statistics.median
    ref_rate, ref_first = med(ref_rates), med(ref_firsts)
    print(
        f"\n{args.tokens} tokens a reply; reference (raw generate alone, {len(ref_rates)} runs): "
        f"{ref_rate:6.1f} tok/s, first token {ref_first * 1000:6.1f} ms"
    )
    for case, rows in ours.items():
        rates = [row["tokens"] / row["seconds"] for row in rows]
        firsts = [row["first"] for row in rows if "first" in row]
        threads = sorted({row["threads"] for row in rows})
        print(
            f"  side by side, {case:9s} (threads {threads}): each pane {med(rates):6.1f} tok/s "
            f"({med(rates) / ref_rate:.2f}x; both {2 * med(rates):6.1f}), first character "
            f"{med(firsts) * 1000:6.1f} ms ({med(firsts) / ref_first:.2f}x)   [{len(rows)} replies; tok/s "
            f"{min(rates):.0f}-{max(rates):.0f}]"
        )
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
