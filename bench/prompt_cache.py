"""A chat turn late in a conversation: time to the first chunk with the prompt cache, without it, and raw.

Each chat turn's prompt is the whole conversation so far (``core.generation.chat_prompt``). The bench holds a
conversation of ``--turns`` turns (each question a verse of the sample text, each reply ``--reply`` greedy
tokens) and, at every turn, measures from the same rest (``--idle``):

* reference: raw ``model.generate`` of one token on the whole prompt (prefill + first token), from a thread
  (the same threads as ours: ``--threads``, or gpt2tui's plan, passed to the chat's child);
* cache off: the turn through ``LoadedModel.reply`` with an empty prompt cache (what every turn did before);
* ours: the same turn with the model's own prompt cache, which holds the previous turn (the default).

Time runs from the call to the first chunk (in-process, no UI). ``--screen`` measures through the chat
screen instead, the model in its child process as the app runs it: from Enter to the first visible character
of each turn, in one conversation with the cache off and one with it on (the child reads the switch), the
reference measured afterwards on each turn's prompt. The reply after each turn's measurements is the one the
conversation keeps. ``--shape gpt2`` is GPT-2 124M's shape
(12 layers, 768 wide, 1,024 positions, random weights: the speed is the shape's, not the weights'); ``small``
is the scratch ``small`` shape. Printed per turn (median of ``--repeats`` conversations): prompt tokens, of
those cached, the three times and the ratios to the reference.

Run: ``python bench/prompt_cache.py`` (``--shape gpt2 --turns 8 --repeats 3``; ``--help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_chat import CORPUS, SIZE, host_app, load_average, measured_screen, reference_first_token, save


def build(shape: str) -> Any:
    """A ``LoadedModel`` of ``shape`` with the sample text's tokenizer (no template: turns end with EOS)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2tui.core.card import ModelMetadata
    from gpt2tui.core.generation import LoadedModel
    from gpt2tui.core.models import build_scratch

    model, tokenizer = build_scratch([CORPUS.read_text(encoding="utf-8")], "small", 0, n_positions=1024)
    if shape == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024)
        config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
        model = GPT2LMHeadModel(config)
    model.eval()
    return LoadedModel("bench", CORPUS.parent, model, tokenizer, ModelMetadata())


def questions(count: int) -> list[str]:
    """``count`` verses of the sample text, one per turn."""
    lines = [
        line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 60
    ]
    return [lines[i * 7 % len(lines)][:160] for i in range(count)]


def first_chunk(
    loaded: Any, question: str, history: list[tuple[str, str]], settings: Any
) -> tuple[float, Any]:
    """Seconds from the call to the first chunk of a chat turn, and the stream (to read on)."""
    started = time.perf_counter()
    reply_stream = loaded.reply("chat", question, history, settings)
    iterator = iter(reply_stream)
    first = next(iterator)
    seconds = time.perf_counter() - started
    return seconds, (reply_stream, first, iterator)


def conversation(loaded: Any, turns: int, reply_tokens: int, idle: float) -> list[dict[str, float]]:
    """One conversation; per turn the prompt's tokens, the cached ones and the three times."""
    from gpt2tui.core.generation import GenerationSettings, chat_prompt
    from gpt2tui.core.prompt_cache import PromptCache

    settings = GenerationSettings(strategy="greedy", max_new_tokens=reply_tokens)
    history: list[tuple[str, str]] = []
    loaded.prompt_cache.clear()
    rows = []
    for question in questions(turns):
        prompt = chat_prompt(history, question, loaded, settings.max_new_tokens)
        reference = reference_first_token(loaded, idle, prompt)
        cold = dataclasses.replace(loaded, prompt_cache=PromptCache())
        time.sleep(idle)
        off, (off_stream, _, rest) = first_chunk(cold, question, history, settings)
        for _ in rest:  # the rest of the turn (not kept)
            pass
        time.sleep(idle)
        ours, (reply_stream, first, rest) = first_chunk(loaded, question, history, settings)
        text = first + "".join(rest)
        rows.append(
            {
                "prompt": reply_stream.reply.prompt_tokens,
                "cached": reply_stream.reply.cached_tokens,
                "reference": reference,
                "off": off,
                "ours": ours,
                "same": float(text == off_stream.reply.text),  # rounding could flip a near-tie
            }
        )
        history.append((question, text))
    return rows


def through_screen(
    loaded: Any, folder: Path, turns: int, reply_tokens: int, idle: float
) -> list[dict[str, float]]:
    """One conversation through the chat screen (the model in its child process, chat mode): per turn, Enter
    to the first visible character, and raw prefill + first token on the same prompt in this process."""
    import asyncio

    from gpt2tui.core.generation import GenerationSettings, chat_prompt
    from gpt2tui.ui.widgets.chat_pane import ChatPane
    from gpt2tui.ui.widgets.prompt_input import PromptInput

    marks: dict[str, Any] = {"enter": None, "first": None}

    class FirstCharacter(ChatPane):
        def _flush(self) -> None:
            super()._flush()
            turn = self.turns[-1] if self.turns else None
            if (
                turn is not None
                and not turn.waiting
                and marks["first"] is None
                and marks["enter"] is not None
            ):
                marks["first"] = time.perf_counter() - marks["enter"]

    def entered(screen: Any) -> None:
        marks["enter"], marks["first"] = time.perf_counter(), None

    settings = GenerationSettings(strategy="greedy", max_new_tokens=reply_tokens)
    screen = measured_screen(FirstCharacter, entered)(str(folder), settings, mode="chat")
    rows: list[dict[str, float]] = []
    prompts: list[str] = []

    async def drive() -> None:
        async with host_app(screen)().run_test(size=SIZE) as pilot:
            while screen.loaded is None:
                await asyncio.sleep(0.05)
            pane = screen.panes[0]
            for question in questions(turns):
                history = [(t.prompt, t.text) for t in pane.turns]
                prompts.append(chat_prompt(history, question, loaded, reply_tokens))
                screen.query_one("#prompt", PromptInput).value = question
                await asyncio.sleep(idle)
                await pilot.press("enter")
                while screen.active is not None or marks["first"] is None or pane.turns[-1].reply is None:
                    await asyncio.sleep(0.02)
                reply = pane.turns[-1].reply
                rows.append(
                    {"prompt": reply.prompt_tokens, "cached": reply.cached_tokens, "first": marks["first"]}
                )

    asyncio.run(drive())
    # The reference after the app has closed: measured inside its event loop, it took 5-10x as long.
    for row, prompt in zip(rows, prompts, strict=True):
        row["reference"] = reference_first_token(loaded, idle, prompt)
    return rows


def screen_main(args: argparse.Namespace, loaded: Any) -> None:
    """``--screen``: conversations through the chat screen with the cache off and on (interleaved)."""
    import os
    import tempfile

    from gpt2tui.core.prompt_cache import PROMPT_CACHE_ENV

    runs: dict[str, list[list[dict[str, float]]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(loaded, Path(tmp) / "bench-model", args.reply)
        for _ in range(args.repeats):
            for case in ("off", "on"):
                os.environ[PROMPT_CACHE_ENV] = "default" if case == "off" else ""  # the child reads it
                runs[case].append(through_screen(loaded, folder, args.turns, args.reply, args.idle))
    print(
        f"{'turn':>4} {'prompt':>6} {'cached':>6} {'raw ms':>7} {'off ms':>7} {'ours ms':>7} {'off/raw':>7} {'ours/raw':>8}"
    )
    for turn in range(args.turns):

        def med(case: str, key: str, turn: int = turn) -> float:
            return statistics.median(run[turn][key] for run in runs[case])

        reference = statistics.median(run[turn]["reference"] for case in runs for run in runs[case])
        print(
            f"{turn + 1:>4} {med('on', 'prompt'):>6.0f} {med('on', 'cached'):>6.0f} {reference * 1e3:>7.1f} "
            f"{med('off', 'first') * 1e3:>7.1f} {med('on', 'first') * 1e3:>7.1f} "
            f"{med('off', 'first') / reference:>7.2f} {med('on', 'first') / reference:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("gpt2", "small"), default="gpt2", help="the model's shape")
    parser.add_argument("--turns", type=int, default=8, help="turns in the conversation")
    parser.add_argument("--reply", type=int, default=40, help="tokens in each reply (greedy)")
    parser.add_argument("--repeats", type=int, default=3, help="conversations (the median per turn)")
    parser.add_argument("--idle", type=float, default=0.3, help="seconds of rest before each measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: gpt2tui's plan)")
    parser.add_argument(
        "--screen",
        action="store_true",
        help="through the chat screen (model in its child process): Enter to the first visible character",
    )
    args = parser.parse_args()

    import os

    from gpt2tui.core.device import APPLIED_ENV, configure_threads

    plan = configure_threads(args.threads)
    os.environ.pop(APPLIED_ENV, None)  # the chat's child takes OMP_NUM_THREADS as given: the same threads
    import torch

    from gpt2tui.core.quiet import quiet_transformers

    quiet_transformers()
    print(f"load average {load_average()}; threads: {plan.describe()}")
    loaded = build(args.shape)
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}; shape {args.shape} "
        f"({sum(p.numel() for p in loaded.model.parameters()) / 1e6:.0f}M parameters)"
    )
    if args.screen:
        from gpt2tui.ui.libraries import ensure_libraries

        ensure_libraries()  # as the app does after its first frame
        screen_main(args, loaded)
        print(f"load average {load_average()}")
        return
    conversation(loaded, 2, 4, 0.0)  # warm-up
    runs = [conversation(loaded, args.turns, args.reply, args.idle) for _ in range(args.repeats)]
    print(
        f"{'turn':>4} {'prompt':>6} {'cached':>6} {'raw ms':>7} {'off ms':>7} {'ours ms':>7} "
        f"{'off/raw':>7} {'ours/raw':>8}"
    )
    for turn in range(args.turns):
        rows = [run[turn] for run in runs]

        def med(key: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(row[key] for row in rows)

        print(
            f"{turn + 1:>4} {med('prompt'):>6.0f} {med('cached'):>6.0f} {med('reference') * 1e3:>7.1f} "
            f"{med('off') * 1e3:>7.1f} {med('ours') * 1e3:>7.1f} {med('off') / med('reference'):>7.2f} "
            f"{med('ours') / med('reference'):>8.2f}"
        )
    same = sum(row["same"] for run in runs for row in run)
    print(f"replies identical with and without the cache: {same:.0f} of {args.turns * args.repeats}")
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
