"""Per-append cost of streaming into the chat transcript, at 100 and 10,000 lines of history.

Each measured append is what the chat's flush timer does once per tick: ``Transcript.append(chunk)`` plus
painting the visible lines (``render_line`` for every row of the widget, as the compositor would). For
contrast, the naive design (one ``Static`` holding the whole transcript, updated per chunk and re-rendered)
is timed the same way. Run: ``python bench/ui_append.py`` (headless, about a minute on a laptop CPU).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from gpt2tui.ui.widgets.transcript import Transcript

SIZE = (120, 40)
APPENDS = 300
LINE = "an earlier line of the conversation, long enough to look like a real reply from the model"


class TranscriptApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


class NaiveApp(App[None]):
    """The design the transcript avoids: one widget whose whole text is re-rendered per chunk."""

    def compose(self) -> ComposeResult:
        yield Static()


def paint(widget: Transcript) -> None:
    for y in range(widget.size.height):
        widget.render_line(y)


async def transcript_cost(history_lines: int, painted: bool = True) -> list[float]:
    app = TranscriptApp()
    async with app.run_test(size=SIZE) as pilot:
        transcript = app.query_one(Transcript)
        for number in range(history_lines):
            transcript.write(f"{number}: {LINE}")
        await pilot.pause()
        transcript.open(Text("tiny ▸ "))
        costs = []
        for number in range(APPENDS):
            started = time.perf_counter()
            transcript.append(f"tok{number} " + ("\n" if number % 40 == 39 else ""))
            if painted:
                paint(transcript)
            costs.append(time.perf_counter() - started)
        return costs


async def naive_cost(history_lines: int) -> list[float]:
    app = NaiveApp()
    async with app.run_test(size=SIZE) as pilot:
        static = app.query_one(Static)
        text = "\n".join(f"{number}: {LINE}" for number in range(history_lines)) + "\ntiny ▸ "
        await pilot.pause()
        console = app.console
        options = console.options.update_width(SIZE[0])
        costs = []
        for number in range(8):
            started = time.perf_counter()
            text += f"tok{number} "
            static.update(text)
            console.render_lines(Text(text), options)  # what a full re-render of the widget costs
            costs.append(time.perf_counter() - started)
        return costs


def describe(label: str, costs: list[float]) -> str:
    micro = [c * 1e6 for c in costs]
    return (
        f"{label:<40} median {statistics.median(micro):9.1f} µs   "
        f"p95 {sorted(micro)[int(len(micro) * 0.95) - 1]:9.1f} µs   ({len(micro)} appends)"
    )


async def main() -> None:
    """Each pair is measured in this run; the ratio (10,000 lines / 100 lines) is the claim: ~1.0x."""
    pairs = [
        ("Transcript append", lambda n: transcript_cost(n, painted=False)),
        ("Transcript append+paint", transcript_cost),
        ("naive Static update+render", naive_cost),
    ]
    for label, measure in pairs:
        short, long = await measure(100), await measure(10_000)
        print(describe(f"{label}, {100:>6} lines", short))
        print(describe(f"{label}, {10_000:>6} lines", long))
        ratio = statistics.median(long) / statistics.median(short)
        print(f"{label}: cost at 10,000 lines / cost at 100 lines = {ratio:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
