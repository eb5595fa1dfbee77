"""Time the issue's acceptance command: ``gpt2tui train FILE --base scratch --scratch-size tiny --max-steps 200``.

Runs the real CLI in a fresh process per file (start-up, tokenizer training, packing, both evaluations and the
save included) in a throw-away GPT2TUI_HOME, and prints wall time against the 120 s budget and the perplexity
ratio after/before. Run: ``python bench/train_tiny.py [FILE ...]`` (default: the sample files, plus the full
KJV corpus when ../shared/corpora/kjv.txt exists).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 120.0


def run(path: Path) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "GPT2TUI_HOME": home}
        command = [
            sys.executable,
            "-m",
            "gpt2tui",
            "train",
            str(path),
            "--base",
            "scratch",
            "--scratch-size",
            "tiny",
            "--max-steps",
            "200",
            "--json",
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        wall = time.perf_counter() - started
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"{path.name:<18} {path.stat().st_size / 1e6:6.2f} MB  wall {wall:6.1f} s ({wall / BUDGET_SECONDS:.2f}x of "
        f"the 120 s budget)  train {result['tokens_per_second']:8,.0f} tok/s  perplexity "
        f"{result['perplexity_before']:8.1f} -> {result['perplexity_after']:7.1f} "
        f"({result['perplexity_after'] / result['perplexity_before']:.3f}x)"
    )


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]] or [
        ROOT / "sample_data" / "qa.csv",
        ROOT / "sample_data" / "kjv_sample.txt",
    ]
    corpus = ROOT.parent / "shared" / "corpora" / "kjv.txt"
    if not sys.argv[1:] and corpus.exists():
        files.append(corpus)
    for path in files:
        run(path)


if __name__ == "__main__":
    main()
