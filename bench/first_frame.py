"""Time from process start to the TUI's first frame, against the import time it avoids.

Both are measured in this run, each in a fresh process: (a) ``gpt2tui``'s app until its first screen has
refreshed (headless, so terminal speed is not measured); (b) ``import torch, transformers, datasets``, which
the app defers to a background thread. Run: ``python bench/first_frame.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

FIRST_FRAME = """
import time
started = time.perf_counter()
from gpt2tui.ui.app import GPT2TUIApp

async def first_frame(pilot):
    await pilot.pause()
    print(f"FRAME {time.perf_counter() - started + {startup}:.3f}")
    pilot.app.exit()

GPT2TUIApp(warm_up=False).run(headless=True, size=(120, 40), auto_pilot=first_frame)
"""
HEAVY = """
import time
started = time.perf_counter()
import torch, transformers, datasets
from transformers import AutoModelForCausalLM
print(f"FRAME {time.perf_counter() - started + {startup}:.3f}")
"""
RUNS = 5


def interpreter_startup() -> float:
    """Seconds for a bare ``python -c pass`` (added to both, since a user pays it too)."""
    import time

    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(code: str, startup: float) -> float:
    values = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GPT2TUI_HOME": home}
        for _ in range(RUNS):
            out = subprocess.run(
                [sys.executable, "-c", code.replace("{startup}", f"{startup!r}")],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            ).stdout
            values.append(
                float(next(line for line in out.splitlines() if line.startswith("FRAME")).split()[1])
            )
    return statistics.median(values)


def main() -> None:
    startup = interpreter_startup()
    frame = measure(FIRST_FRAME, startup)
    heavy = measure(HEAVY, startup)
    print(f"interpreter start-up                      {startup:6.3f} s")
    print(f"gpt2tui first frame (median of {RUNS})          {frame:6.3f} s")
    print(f"import torch+transformers+datasets ({RUNS})   {heavy:6.3f} s")
    print(f"first frame / heavy imports = {frame / heavy:.2f}x")


if __name__ == "__main__":
    main()
