"""How long a Hub base takes to fail with no network: gpt2tui's probe versus transformers' own retries.

Both are measured in this run, each in a fresh process with an empty HF cache. Run on a machine without
network (or with HF_ENDPOINT pointing at an address that does not answer): ``python bench/hub_offline.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

OURS = "from gpt2tui.core.models import resolve_base\ntry:\n    resolve_base('gpt2')\nexcept Exception as e:\n    print(e)"
RAW = "from transformers import AutoTokenizer\ntry:\n    AutoTokenizer.from_pretrained('gpt2')\nexcept Exception as e:\n    print(type(e).__name__)"


def timed(code: str) -> float:
    with tempfile.TemporaryDirectory() as hf_home:
        env = {**os.environ, "HF_HOME": hf_home}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        return time.perf_counter() - started


def main() -> None:
    ours = timed(OURS)
    raw = timed(RAW)
    print(f"gpt2tui resolve_base('gpt2') fails after     {ours:6.1f} s (process start included)")
    print(f"transformers from_pretrained('gpt2') fails after {raw:6.1f} s")
    print(f"ratio: {raw / ours:.1f}x faster to the answer")


if __name__ == "__main__":
    main()
