"""Streaming through the chat screen against raw ``model.generate``: tokens/s, first character, UI cost.

One model (a GPT-2 of the ``small`` scratch shape, untrained, with ``n_positions`` large enough for the longest
reply and a byte-level BPE trained on ``sample_data/kjv_sample.txt``), one prompt, greedy decoding and
``min_new_tokens == max_new_tokens`` so every reply has exactly N tokens. The reference and each of ours are
interleaved, run after run, each repeated (median, and the median of the ratios of each run of ours to the
reference run just before it, which cancels load that changes more slowly than a run):

* reference: ``model.generate(ids, max_new_tokens=N)`` under ``torch.inference_mode``, no streamer, called
  from a new thread of this process (see ``in_a_thread``);
  ours: the same reply typed into the chat screen (raw mode) of a headless app (``App.run_test``), from the
  submitted prompt until the last token's text has been appended to the transcript. Tokens/s = N / seconds.
  Two ways: ``child`` (the default: the chat loads the model, saved to a folder, in a child process,
  ``core.generator``) and ``in-process`` (the same model object injected into the screen, as with
  ``GPT2TUI_CHAT_IN_PROCESS=1``).
* first character: reference = ``generate`` with ``max_new_tokens=1`` (prefill + first token); ours = from
  the moment the chat screen handles Enter (before it clears the prompt box and writes the prompt; until
  2026-12-07 the clock started later, when the pane started the reply) until the first visible reply
  character is appended to the transcript. Both start
  from the same idle pause (``--idle-before-first``, 0.3 s: a user pauses before pressing Enter): after an
  idle moment torch's worker threads and the machine's cores have gone to sleep, and the first forward pass
  wakes them (measured: the same prefill took 12 ms right after other work and 25-40 ms after 0.3 s idle).
  ``--idle-before-first 0`` measures the reference hot, straight after a long ``generate``, as before.
  After each long reply the chat sends ``--first-samples`` (4) replies of two tokens, each after the same
  rest, and the reference is measured as many more times: on this VM single first-character times range
  over 2x, so each median needs many samples (the quartiles are printed).
* UI cost: CPU time of the UI thread (``time.thread_time()`` read in that thread, at each flush into the
  transcript), per 1,000 tokens reaching the transcript: the first thousand against the last; and per flush
  (the flush timer's append and repaint), since a slower generator (attention grows with the context) means
  more flushes per 1,000 tokens at the end of a long reply. Token counts are mapped to character offsets of
  the (deterministic, greedy) reference text. Generating threads are not the UI thread, so this is what
  drawing the reply costs.
* UI cost at a constant token rate (``paced``): the same reply's token texts replayed into the chat screen at
  the rate of the reference run just before it, from a stand-in model, so the generator does not slow down as
  the context grows. With a real model the flush timer (fixed rate) runs more often per 1,000 tokens at the
  end of a long reply only because the model is slower there; at a constant rate, UI CPU per 1,000 tokens
  is what the transcript's length costs. (Its tokens/s is the replay's own rate, so it is not reported.)
* The transcript already holds an earlier exchange that fills the screen (as from a chat's second reply on),
  so every flush of the measured reply scrolls and repaints the whole transcript. Into an empty transcript
  (``--empty-transcript``), a flush repaints only its changed line until the text reaches the bottom, and then
  the whole transcript at each new line: the first thousand tokens are cheaper than the rest because of the
  screen's height, not of the reply's length (measured: per flush 5.9 ms while the screen fills, then flat at
  6.6 ms for every later thousand, the same as with a full screen from the start).

Every case computes with the same torch thread count: by default the one ``gpt2tui generate`` would choose
now (the cores no other process keeps busy, ``core.device``), or ``--threads N``; the child is given it
through ``OMP_NUM_THREADS``. The load average is printed before and after: on a shared machine, compare runs
only at similar load.

Run: ``python bench/stream_chat.py`` (``--tokens 1000 4000 --repeats 3 --paths child in-process paced``
by default; ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
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
PATHS = ("child", "in-process", "paced")


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


def reference_first_token(loaded: Any, idle: float = 0.0, prompt: str = PROMPT) -> float:
    """Prefill + first token of ``prompt``: ``generate`` with ``max_new_tokens=1``, after ``idle`` seconds of
    rest."""
    import torch

    time.sleep(idle)
    ids = torch.tensor([loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    kwargs = {**generate_kwargs(loaded, 1)}

    def generate() -> Any:
        with torch.inference_mode():
            return loaded.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)

    started = time.perf_counter()
    in_a_thread(generate)
    return time.perf_counter() - started


def save(loaded: Any, folder: Path, max_tokens: int) -> Path:
    """The model as a folder the chat can load in its child process; every reply there has its full length."""
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    config = loaded.model.generation_config
    config.min_new_tokens = max_tokens  # max_new_tokens (<= this) then sets each reply's exact length
    config.save_pretrained(folder)
    config.min_new_tokens = None
    return folder


def paced(loaded: Any, pieces: list[str], rate: float) -> Any:
    """A stand-in for ``loaded`` whose replies are ``pieces`` (one per token), one every ``1 / rate`` seconds."""
    from gpt2tui.core.generation import LoadedModel, Reply

    class PacedStream:
        def __init__(self, stop: threading.Event | None) -> None:
            self.stop = stop or threading.Event()
            self.reply = Reply()

        def __iter__(self) -> Any:
            started = time.perf_counter()
            for index, piece in enumerate(pieces):
                delay = started + (index + 1) / rate - time.perf_counter()
                if self.stop.wait(max(0.0, delay)):
                    break
                self.reply.text += piece
                self.reply.new_tokens += 1
                yield piece
            self.reply.seconds = time.perf_counter() - started

    class PacedModel(LoadedModel):
        def reply(self, *_: Any, stop: threading.Event | None = None, **__: Any) -> Any:
            return PacedStream(stop)

    return PacedModel(loaded.name, loaded.path, loaded.model, loaded.tokenizer, loaded.metadata)


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded reply, read from an 8-token window (linear, not quadratic)."""
    pieces = []
    for end in range(1, len(ids) + 1):
        window = ids[max(0, end - 8) : end]
        pieces.append(tokenizer.decode(window)[len(tokenizer.decode(window[:-1])) :])
    return pieces


def child_cpu(pid: int) -> float:
    """CPU seconds a live process has used so far (Linux), 0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


EARLIER = "An earlier reply, long enough to fill the screen before the measured reply starts. " * 60


def measured_screen(pane_class: type[Any], on_enter: Callable[[Any], None]) -> type[Any]:
    """The chat screen with panes of ``pane_class``, calling ``on_enter(screen)`` when Enter reaches it."""
    from gpt2tui.ui.screens import chat as chat_module

    class Measured(chat_module.ChatScreen):  # type: ignore[misc]
        CSS_PATH = str(
            Path(chat_module.__file__).with_name("chat.tcss")
        )  # relative paths follow the subclass

        def on_prompt_input_submitted(self) -> None:
            on_enter(self)

    Measured.pane_class = pane_class
    return Measured


def host_app(screen: Any) -> type[Any]:
    """A bare app that opens ``screen`` over a placeholder, as the real app opens the chat over home."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Bench(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("home")

        def on_mount(self) -> None:
            self.push_screen(screen)

    return Bench


async def ask(pilot: Any, screen: Any, idle: float) -> None:
    """``PROMPT`` typed into the chat ``screen``, then Enter after ``idle`` seconds of rest."""
    from gpt2tui.ui.widgets.prompt_input import PromptInput

    screen.query_one("#prompt", PromptInput).value = PROMPT
    await asyncio.sleep(idle)
    await pilot.press("enter")


def through_chat(
    loaded: Any,
    tokens: int,
    offsets: list[int],
    folder: Path | None,
    *,
    empty: bool = False,
    idle: float = 0.0,
    first_samples: int = 0,
) -> dict[str, Any]:
    """One reply through the chat screen: seconds to the last token, to the first character, UI CPU marks;
    then ``first_samples`` replies of two tokens, each after ``idle`` seconds, for more first characters
    (``marks["firsts"]``: seconds to the first character of every reply, the long one first).

    ``folder``: the chat loads that model folder in its child process (the default path); None: ``loaded``
    is injected into the screen and generates in this process.
    """
    from gpt2tui.core.generation import GenerationSettings
    from gpt2tui.ui.screens.chat import ChatScreen
    from gpt2tui.ui.widgets.chat_pane import ChatPane

    marks: dict[str, Any] = {
        "ui_cpu": [],
        "flushes": [],
        "done": None,
        "child_cpu": 0.0,
        "firsts": [],
        "reply_start": None,
    }
    flushes = 0
    total_chars = offsets[-1]

    class MeasuredPane(ChatPane):
        """The chat pane, timing the moments text reaches its transcript (in the UI thread)."""

        def _flush(self) -> None:
            nonlocal flushes
            flushes += 1
            super()._flush()
            turn = self.turns[-1] if self.turns else None
            if turn is None or turn.waiting:
                return
            now = time.perf_counter()
            if marks["reply_start"] is not None:
                marks["firsts"].append(now - marks["reply_start"])
                marks["reply_start"] = None
            shown = len(turn.text)
            cpu = marks["ui_cpu"]
            while len(cpu) < len(offsets) and shown >= offsets[len(cpu)]:
                cpu.append(time.thread_time())
                marks["flushes"].append(flushes)
            if marks["done"] is None and shown >= total_chars:
                marks["done"] = now
                if self.process is not None:
                    marks["child_cpu"] = child_cpu(self.process.pid) - marks["child_start_cpu"]

    def entered(screen: ChatScreen) -> None:
        """The clock starts (Textual then runs the chat screen's own handler)."""
        marks["reply_start"] = time.perf_counter()
        if "start" in marks:  # a first-character sample: the long reply's marks stay
            return
        marks["start"] = marks["reply_start"]
        marks["start_cpu"] = time.thread_time()
        process = screen.panes[0].process
        if process is not None:
            marks["child_start_cpu"] = child_cpu(process.pid)

    Measured = measured_screen(MeasuredPane, entered)
    settings = GenerationSettings(strategy="greedy", max_new_tokens=tokens)
    if folder is None:
        screen = Measured("bench", settings, loaded=loaded, mode="raw")
    else:
        screen = Measured(str(folder), settings, mode="raw")
    Bench = host_app(screen)

    async def drive() -> None:
        app = Bench()
        async with app.run_test(size=SIZE) as pilot:
            while screen.loaded is None:  # the child loading the model is not part of the reply
                await asyncio.sleep(0.05)
            if not empty:
                screen.transcript.write("an earlier prompt", prefix="you ▸ ")
                screen.transcript.write(EARLIER, prefix="bench ▸ ")
            await pilot.pause()
            await ask(pilot, screen, idle)
            while marks["done"] is None or screen.active is not None:
                await asyncio.sleep(0.05)
            screen.settings = screen.settings.replace(max_new_tokens=2)
            for _ in range(first_samples):
                await pilot.pause()
                await ask(pilot, screen, idle)
                while marks["reply_start"] is not None or screen.active is not None:
                    await asyncio.sleep(0.02)

    loaded.model.generation_config.min_new_tokens = tokens  # every reply has exactly ``tokens`` tokens
    cpu = time.process_time()
    try:
        asyncio.run(drive())
    finally:
        loaded.model.generation_config.min_new_tokens = None
    marks["process_cpu"] = time.process_time() - cpu + marks["child_cpu"]
    return marks


def prepare(threads: int | None, max_tokens: int, children_plan: bool = False) -> Any:
    """This process's threads (planned before torch loads, as ``gpt2tui generate`` does), the libraries as the
    app imports them after its first frame (and then freezes the heap), and the model; the set-up printed.

    A child process computes with the same threads, unless ``children_plan``: each then plans its own, as a
    chat's child does."""
    from gpt2tui.core.device import APPLIED_ENV, configure_threads

    plan = configure_threads(threads)
    if not children_plan:
        os.environ.pop(APPLIED_ENV, None)  # a child takes OMP_NUM_THREADS as given, not as ours to re-plan
    print(f"load average {load_average()}; threads: {plan.describe()}")
    import torch

    from gpt2tui.core.quiet import quiet_environment, quiet_transformers
    from gpt2tui.ui.libraries import ensure_libraries

    quiet_environment()
    quiet_transformers()
    loaded = build(max_tokens)
    ensure_libraries()
    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, cores {os.cpu_count()}, "
        f"torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    return loaded


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1000, 4000], help="reply lengths")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (median reported)")
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=list(PATHS),
        help="which ways through the chat to measure",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for every case (default: gpt2tui's free-core policy)",
    )
    parser.add_argument(
        "--empty-transcript",
        action="store_true",
        help="start each measured reply in an empty transcript (default: one that fills the screen)",
    )
    parser.add_argument(
        "--idle-before-first",
        type=float,
        default=0.3,
        help="seconds of rest before the first-character measurements, ours and the reference's",
    )
    parser.add_argument(
        "--first-samples",
        type=int,
        default=4,
        help="short replies after each long one, each one more first-character sample (as many references)",
    )
    parser.add_argument(
        "--prompt-cache",
        action="store_true",
        help="keep the chat's prompt cache (default off here: every reply repeats one prompt, of which the cache "
        "would compute only the last token, while the reference computes all of it)",
    )
    args = parser.parse_args()
    if not args.prompt_cache:
        from gpt2tui.core.prompt_cache import PROMPT_CACHE_ENV

        os.environ[PROMPT_CACHE_ENV] = "default"  # read at each reply, here and in the child
    print(f"prompt cache {'on' if args.prompt_cache else 'off'}")

    loaded = prepare(args.threads, max(args.tokens))
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"model: small shape, {params / 1e6:.1f} M parameters, n_positions {loaded.context_length}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(loaded, Path(tmp) / "bench-model", max(args.tokens))
        folders = {"child": folder, "in-process": None, "paced": None}
        _, warm_ids, _ = reference(loaded, 8)  # warm-up (first calls allocate)
        warm = [len(loaded.tokenizer.decode(warm_ids))]
        for path in args.paths:
            model = (
                paced(loaded, token_pieces(loaded.tokenizer, warm_ids), 100.0) if path == "paced" else loaded
            )
            through_chat(model, 8, warm, folders[path])
        first_ref: list[float] = []
        first_ours: dict[str, list[float]] = {path: [] for path in args.paths}
        for tokens in args.tokens:
            ref_rates, ref_cpu = [], []
            ours: dict[str, dict[str, list[float]]] = {
                path: {
                    key: [] for key in ("rate", "paired", "cpu", "ui_first", "ui_last", "fl_first", "fl_last")
                }
                for path in args.paths
            }
            for _ in range(args.repeats):
                for path in args.paths:
                    samples = 0 if path == "paced" else args.first_samples  # a replay has no prefill
                    seconds, ids, cpu = reference(loaded, tokens)
                    ref_rates.append(tokens / seconds)
                    ref_cpu.append(cpu)
                    for _ in range(1 + samples):
                        first_ref.append(reference_first_token(loaded, args.idle_before_first))
                    # Character offsets of the reply at every 1,000 tokens (and at the end).
                    cuts = [*range(1000, tokens, 1000), tokens]
                    offsets = [
                        len(loaded.tokenizer.decode(ids[:cut], skip_special_tokens=True)) for cut in cuts
                    ]
                    model = loaded
                    if path == "paced":  # this reply's tokens at the reference's average rate
                        model = paced(loaded, token_pieces(loaded.tokenizer, ids), ref_rates[-1])
                    marks = through_chat(
                        model,
                        tokens,
                        offsets,
                        folders[path],
                        empty=args.empty_transcript,
                        idle=args.idle_before_first,
                        first_samples=samples,
                    )
                    row = ours[path]
                    rate = tokens / (marks["done"] - marks["start"])
                    row["rate"].append(rate)
                    row["paired"].append(rate / ref_rates[-1])
                    first_ours[path].extend(marks["firsts"])
                    row["cpu"].append(marks["process_cpu"])
                    ui = [marks["start_cpu"], *marks["ui_cpu"]]
                    spans = zip(ui[:-1], ui[1:], [0, *cuts[:-1]], cuts, strict=True)
                    per_thousand = [(b - a) * 1000 / (cb - ca) for a, b, ca, cb in spans]
                    row["ui_first"].append(per_thousand[0])
                    row["ui_last"].append(per_thousand[-1])
                    # The flush runs at a fixed rate whatever the token rate: per flush is one append's cost.
                    counts = [0, *marks["flushes"]]
                    per_flush = [
                        (b - a) / max(1, fb - fa)
                        for a, b, fa, fb in zip(ui[:-1], ui[1:], counts[:-1], counts[1:], strict=True)
                    ]
                    row["fl_first"].append(per_flush[0])
                    row["fl_last"].append(per_flush[-1])
            ref = statistics.median(ref_rates)
            print(
                f"\n{tokens} tokens (median of {len(ref_rates)} reference runs, {args.repeats} of each of ours; "
                f"reference runs {', '.join(f'{r:.0f}' for r in ref_rates)})"
            )
            print(
                f"  reference (raw generate)  {ref:8.1f} tok/s   process CPU {statistics.median(ref_cpu):6.2f} s"
            )
            for path, row in ours.items():
                med = statistics.median
                rate = med(row["rate"])
                if path == "paced":
                    print(f"  ours, {path:10s}          replayed at the reference's rate ({rate:.1f} tok/s)")
                else:
                    print(
                        f"  ours, {path:10s}          {rate:8.1f} tok/s   ratio {rate / ref:.3f}x   "
                        f"paired {med(row['paired']):.3f}x (runs {', '.join(f'{r:.0f}' for r in row['rate'])}; "
                        f"ratios {', '.join(f'{r:.2f}' for r in row['paired'])})"
                    )
                print(
                    f"      process CPU {med(row['cpu']):6.2f} s (child included); UI thread CPU ms per 1,000 "
                    f"tokens: first {med(row['ui_first']) * 1000:6.1f}, last {med(row['ui_last']) * 1000:6.1f} "
                    f"({med(row['ui_last']) / med(row['ui_first']):.2f}x); per flush: first "
                    f"{med(row['fl_first']) * 1000:5.2f}, last {med(row['fl_last']) * 1000:5.2f} "
                    f"({med(row['fl_last']) / med(row['fl_first']):.2f}x)"
                )

        def spread(values: list[float]) -> str:
            quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
            return (
                f"median of {len(values)}; quartiles {quartiles[0] * 1000:.1f}-{quartiles[2] * 1000:.1f} ms"
            )

        ref_first = statistics.median(first_ref)
        print(
            f"\nfirst character: reference (prefill + first token) {ref_first * 1000:6.1f} ms   ({spread(first_ref)})"
        )
        for path, values in first_ours.items():
            if path == "paced":
                continue
            ours_first = statistics.median(values)
            print(
                f"  ours, {path:10s} (first visible character in the transcript) {ours_first * 1000:6.1f} ms   "
                f"ratio {ours_first / ref_first:.2f}x   ({spread(values)})"
            )
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
