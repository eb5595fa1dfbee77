"""Time from process start to the TUI's first frame, against the import time it avoids.

Each measured in a fresh process: (a) ``gpt2tui``'s app until the settled frame: the last frame it draws
before it is idle (headless, so terminal speed is not measured), which shows the whole home screen with its
footer's keys; the first frame, the number of frames and the moment the test pilot finds the app idle (its
idle check sleeps in 20 ms steps, which no user waits for; the figure this script reported before
2026-12-07) are printed too; (b)
``import torch, transformers, datasets``, which the app defers to a background thread. With
``--against DIR`` the same app of another checkout (e.g. ``git archive`` of an older commit) is measured as
well, for a before/after in one session. The cases are interleaved, run after run, and the median of each is
reported; the load average is printed before and after (other processes on a shared machine slow every case).

Bytecode: a user's ``pip install`` leaves compiled ``.pyc`` files, so every case runs with bytecode caching on
(``PYTHONDONTWRITEBYTECODE`` removed from the environment, as some sandboxes set it) after one unmeasured
warm-up run that writes the cache. Without it each of gpt2tui's ~20 first-frame modules was compiled from
source at every start (about 45 ms), while torch and transformers had their installed ``.pyc``.

Run: ``python bench/first_frame.py`` (``--repeats 5``; ``--help``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_FRAME = """
import time
started = time.perf_counter()
from gpt2tui.ui.app import GPT2TUIApp
from textual.app import App
imported = time.perf_counter()
drawn = []
display = App._display

def timed_display(self, screen, update):
    display(self, screen, update)
    if update is not None:
        drawn.append(time.perf_counter())

App._display = timed_display  # each frame the app hands its driver, with the time it did

async def first_frame(pilot):
    await pilot.pause()
    now = time.perf_counter()
    print(
        f"FRAME {drawn[-1] - started + {startup}:.3f} IMPORT {imported - started + {startup}:.3f} "
        f"FIRST {drawn[0] - started + {startup}:.3f} IDLE {now - started + {startup}:.3f} FRAMES {len(drawn)}"
    )
    pilot.app.exit()

GPT2TUIApp(warm_up=False).run(headless=True, size=(120, 40), auto_pilot=first_frame)
"""
HEAVY = """
import time
started = time.perf_counter()
import torch, transformers, datasets
from transformers import AutoModelForCausalLM
print(f"FRAME {time.perf_counter() - started + {startup}:.3f} IMPORT 0")
"""
TARGET_SECONDS = 0.5
TARGET_RATIO = 0.15


def interpreter_startup(runs: int) -> float:
    """Seconds for a bare ``python -c pass`` (added to every case, since a user pays it too)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(code: str, startup: float, source: Path, home: str) -> dict[str, float]:
    """The marks of one fresh process of ``source`` (FRAME: seconds to the settled frame; IMPORT: to the end of
    the app's import; FIRST: to the first frame; IDLE: to the pilot's idle; FRAMES: frames drawn)."""
    env = {**os.environ, "GPT2TUI_HOME": home, "PYTHONPATH": str(source)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled once, then read from __pycache__
    out = subprocess.run(
        [sys.executable, "-c", code.replace("{startup}", f"{startup!r}")],
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    ).stdout
    words = next(line for line in out.splitlines() if line.startswith("FRAME")).split()
    return {key: float(value) for key, value in zip(words[::2], words[1::2], strict=True)}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case (median reported)")
    parser.add_argument("--against", type=Path, help="another gpt2tui checkout, measured the same way")
    args = parser.parse_args()
    print(f"load average {load()}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    startup = interpreter_startup(args.repeats)
    cases: dict[str, tuple[str, Path]] = {"ours": (FIRST_FRAME, ROOT)}
    if args.against is not None:
        cases["against"] = (FIRST_FRAME, args.against.resolve())
    cases["heavy"] = (HEAVY, ROOT)
    marks: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as home:
        for code, source in cases.values():  # unmeasured: writes the bytecode cache, as an install does
            measure(code, startup, source, home)
        for _ in range(args.repeats):
            for name, (code, source) in cases.items():
                marks[name].append(measure(code, startup, source, home))

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in marks[name])

    def describe(name: str) -> str:
        return (
            f"first frame {median(name, 'FIRST'):.3f} s, {median(name, 'FRAMES'):.0f} frames in all; "
            f"app import done at {median(name, 'IMPORT'):.3f} s; the pilot saw it idle at {median(name, 'IDLE'):.3f} s"
        )

    ours, heavy = median("ours", "FRAME"), median("heavy", "FRAME")
    runs = ", ".join(f"{run['FRAME']:.3f}" for run in marks["ours"])
    print(f"interpreter start-up                         {startup:6.3f} s")
    print(f"gpt2tui settled frame (median of {args.repeats})           {ours:6.3f} s   (runs {runs})")
    print(f"  {describe('ours')}")
    if "against" in marks:
        against = median("against", "FRAME")
        print(f"  the same for {args.against}: settled frame {against:6.3f} s, ours {ours / against:.2f}x")
        print(f"  {describe('against')}")
    print(f"reference: import torch+transformers+datasets ({args.repeats})  {heavy:6.3f} s")
    print(
        f"settled frame / heavy imports = {ours / heavy:.2f}x (target <= {TARGET_RATIO}); "
        f"settled frame {ours:.3f} s (target < {TARGET_SECONDS} s)"
    )
    print(f"load average {load()}")


if __name__ == "__main__":
    main()
