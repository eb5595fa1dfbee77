"""Time from process start to the TUI's first frame, against the import time it avoids.

Each measured in a fresh process: (a) ``gpt2tui``'s app until its first screen has refreshed and the app is
idle (headless, so terminal speed is not measured; the footer's keys are drawn by then); (b)
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
imported = time.perf_counter()

async def first_frame(pilot):
    await pilot.pause()
    now = time.perf_counter()
    print(f"FRAME {now - started + {startup}:.3f} IMPORT {imported - started + {startup}:.3f}")
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


def measure(code: str, startup: float, source: Path, home: str) -> tuple[float, float]:
    """(seconds to the frame, seconds to the end of the app's import) in a fresh process of ``source``."""
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
    line = next(line for line in out.splitlines() if line.startswith("FRAME")).split()
    return float(line[1]), float(line[3])


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
    frames: dict[str, list[float]] = {name: [] for name in cases}
    imports: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as home:
        for code, source in cases.values():  # unmeasured: writes the bytecode cache, as an install does
            measure(code, startup, source, home)
        for _ in range(args.repeats):
            for name, (code, source) in cases.items():
                frame, imported = measure(code, startup, source, home)
                frames[name].append(frame)
                imports[name].append(imported)
    ours, heavy = statistics.median(frames["ours"]), statistics.median(frames["heavy"])
    runs = ", ".join(f"{value:.3f}" for value in frames["ours"])
    print(f"interpreter start-up                         {startup:6.3f} s")
    print(
        f"gpt2tui first frame (median of {args.repeats})             {ours:6.3f} s"
        f"   (runs {runs}; app import done at {statistics.median(imports['ours']):.3f} s)"
    )
    if "against" in frames:
        against = statistics.median(frames["against"])
        print(
            f"  the same for {args.against} {against:6.3f} s"
            f"   (app import done at {statistics.median(imports['against']):.3f} s): ours {ours / against:.2f}x"
        )
    print(f"reference: import torch+transformers+datasets ({args.repeats})  {heavy:6.3f} s")
    print(
        f"first frame / heavy imports = {ours / heavy:.2f}x (target <= {TARGET_RATIO}); "
        f"first frame {ours:.3f} s (target < {TARGET_SECONDS} s)"
    )
    print(f"load average {load()}")


if __name__ == "__main__":
    main()
