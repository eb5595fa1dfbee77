"""Training throughput on a busy CPU: gpt2tui's thread policy against torch's default and HF ``Trainer``.

Each case is a fresh ``gpt2tui train FILE --base scratch --json`` process (its training-loop tokens/s, evals
excluded), idle or with one core kept busy by another process (a pure-Python busy loop, like a compile or a
browser tab). The reference is HF ``Trainer`` on the same scratch model, blocks, batch and steps, in the same
thread count and under the same load, measured in the same run. Cases are interleaved and repeated; the
median is reported.

    python bench/busy_cpu.py [--size tiny|small] [--steps N] [--repeats N] [--file PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "sample_data" / "kjv_sample.txt"


@contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """One other process spinning on a core for the duration (or nothing)."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def ours(file: Path, size: str, steps: int, extra: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Training-loop tokens/s of a real ``gpt2tui train`` and the thread count its header reported."""
    with tempfile.TemporaryDirectory() as home:
        command = [
            sys.executable,
            "-m",
            "gpt2tui",
            "train",
            str(file),
            "--base",
            "scratch",
            "--scratch-size",
            size,
        ]
        command += ["--max-steps", str(steps), "--json", "--save-every", "0", *extra]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**os.environ, **env, "GPT2TUI_HOME": home},
            check=True,
        )
    header = next(line for line in done.stdout.splitlines() if line.startswith("training "))
    threads = header.split(" on CPU, ")[1].split(" thread")[0] if " on CPU, " in header else "?"
    return float(json.loads(done.stdout.splitlines()[-1])["tokens_per_second"]), threads


def trainer(file: Path, size: str, steps: int, threads: int) -> float:
    """HF Trainer's tokens/s on the same job (bench/trainer_reference.py in a fresh process)."""
    script = Path(__file__).with_name("trainer_reference.py")
    command = [sys.executable, str(script), str(file), size, str(steps), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="tiny", choices=("tiny", "small"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    args = parser.parse_args()
    import torch

    print(
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    old: dict[str, str] = {}  # torch's default: all cores (--threads), OpenMP's default waiting
    cases = {
        "idle, gpt2tui": (False, lambda: ours(args.file, args.size, args.steps, [], {})),
        "busy, gpt2tui": (True, lambda: ours(args.file, args.size, args.steps, [], {})),
        "busy, torch default": (
            True,
            lambda: ours(args.file, args.size, args.steps, ["--threads", str(os.cpu_count())], old),
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    threads: dict[str, str] = {}
    results["busy, Trainer (same threads)"] = []
    results["idle, Trainer"] = []
    for _ in range(args.repeats):
        for name, (busy, measure) in cases.items():
            with busy_core(busy):
                rate, used = measure()
            results[name].append(rate)
            threads[name] = used
        busy_threads = int(threads["busy, gpt2tui"]) if threads["busy, gpt2tui"].isdigit() else 1
        with busy_core(True):
            results["busy, Trainer (same threads)"].append(
                trainer(args.file, args.size, args.steps, busy_threads)
            )
        results["idle, Trainer"].append(trainer(args.file, args.size, args.steps, os.cpu_count() or 1))
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"\n{args.size}, {args.steps} steps, median of {args.repeats} (tokens/s of the training loop):")
    for name, value in median.items():
        print(
            f"  {name:<32} {value:>10,.0f}  threads {threads.get(name, '-')}  runs {[round(v) for v in results[name]]}"
        )
    print(
        f"\nbusy / idle, gpt2tui:            {median['busy, gpt2tui'] / median['idle, gpt2tui']:.2f}x (target >= 0.6)"
    )
    print(f"busy / idle, torch default:      {median['busy, torch default'] / median['idle, gpt2tui']:.2f}x")
    print(
        f"busy gpt2tui / busy Trainer:     {median['busy, gpt2tui'] / median['busy, Trainer (same threads)']:.2f}x"
        " (target >= 1.0)"
    )
    print(f"idle gpt2tui / idle Trainer:     {median['idle, gpt2tui'] / median['idle, Trainer']:.2f}x")


if __name__ == "__main__":
    main()
