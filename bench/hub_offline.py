"""How long a Hub base takes to fail with no network: gpt2tui versus transformers' own retries.

Measured in this run, each in a fresh process with an empty HF cache:
  - gpt2tui's ``gpt2tui train sample_data/qa.csv --base gpt2`` (the issue's check: exit 2 within 5 s), with the
    Hub's name failing to resolve (no network), and against a loopback server that accepts connections but
    never answers (a firewalled network, the slow case);
  - the reference: plain ``AutoTokenizer.from_pretrained('gpt2')`` with no network.
Run: ``python bench/hub_offline.py`` on a machine without network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, "-m", "gpt2tui", "train", str(ROOT / "sample_data" / "qa.csv"), "--base", "gpt2"]
RAW = [
    sys.executable,
    "-c",
    "from transformers import AutoTokenizer\ntry:\n    AutoTokenizer.from_pretrained('gpt2')\n"
    "except Exception as e:\n    print(type(e).__name__)",
]


def timed(command: list[str], endpoint: str | None = None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as hf_home, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HF_HOME": hf_home, "GPT2TUI_HOME": home}
        if endpoint:
            env["HF_ENDPOINT"] = endpoint
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        return time.perf_counter() - started, done.returncode


def silent_server() -> str:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    threading.Thread(
        target=lambda: [held.append(server.accept()[0]) for _ in iter(int, 1)], daemon=True
    ).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}"


def main() -> None:
    ours, code = timed(TRAIN)
    print(f"gpt2tui train --base gpt2, no network        {ours:6.1f} s  exit {code}")
    silent, code = timed(TRAIN, silent_server())
    print(f"gpt2tui train --base gpt2, silent endpoint   {silent:6.1f} s  exit {code}")
    raw, _ = timed(RAW)
    print(f"transformers from_pretrained('gpt2'), no network {raw:6.1f} s")
    print(
        f"ratio (transformers / gpt2tui, no network): {raw / ours:.1f}x; worst case {silent:.1f} s of the 5 s budget"
    )


if __name__ == "__main__":
    main()
