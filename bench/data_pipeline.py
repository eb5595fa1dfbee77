"""A 100 MB text file: peak memory, packing speed, and time to the first training step, cold and cached.

Builds ``kjv.txt`` x 24 (about 103 MB) once, a stored tiny model to fine-tune (so the tokenizer is fixed, as
with any stored or Hub base), then times ``gpt2tui train BIG --base tinybase --max-steps 2 --log-every 1
--eval-split 0.0005`` as a real process: from the start to the ``step 1/2`` line, with the peak resident memory
of the process and its children (sampled every 0.1 s). Ours runs twice (an empty cache, then the cached
tokens); the reference is the same command on another checkout (``--reference DIR``, e.g. the commit before
the token cache, extracted with ``git archive``), run once since it has nothing to reuse.

Targets (issue 8): peak RSS < 2 GB; the cached run's first step within 2 s of (the first run's first step
minus its packing time).

Run: ``python bench/data_pipeline.py --reference /tmp/before`` (``--help``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "kjv.txt"
PACKED = re.compile(r"tokenized and packed in ([\d.]+) s")


def big_file(copies: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"gpt2tui-bench-kjv{copies}.txt"
    if not path.exists() or path.stat().st_size != CORPUS.stat().st_size * copies:
        text = CORPUS.read_bytes()
        with path.open("wb") as out:
            for _ in range(copies):
                out.write(text)
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children (tokenizer worker processes included)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def timed_run(source: Path, home: Path, args: list[str]) -> dict[str, float]:
    """Seconds to the first step, packing seconds (ours), and peak tree RSS of one ``gpt2tui train``."""
    env = {**os.environ, "GPT2TUI_HOME": str(home), "PYTHONPATH": str(source)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpt2tui", "train", *args],
        cwd=source,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    first_step, packing, lines = float("nan"), 0.0, []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if (found := PACKED.search(line)) is not None:
            packing = float(found.group(1))
        if line.startswith("step 1/") and first_step != first_step:
            first_step = time.perf_counter() - started
    proc.wait()
    done.set()
    if proc.returncode != 0:
        sys.exit(f"train failed ({proc.returncode}):\n{''.join(lines[-20:])}")
    return {
        "first_step": first_step,
        "packing": packing,
        "peak_rss": peak[0] / 1e9,
        "cached": "from the cache" in "".join(lines),
    }


def make_base(source: Path, home: Path) -> None:
    env = {**os.environ, "GPT2TUI_HOME": str(home), "PYTHONPATH": str(source)}
    subprocess.run(
        [sys.executable, "-m", "gpt2tui", "train", str(ROOT / "sample_data" / "kjv_sample.txt"), "--base",
         "scratch", "--scratch-size", "tiny", "--max-steps", "1", "--name", "tinybase", "--json"],
        cwd=source, env=env, check=True, capture_output=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--copies", type=int, default=24, help="copies of kjv.txt in the big file (24: ~103 MB)"
    )
    parser.add_argument("--reference", type=Path, help="a gpt2tui checkout to run as the reference")
    args = parser.parse_args()

    import torch

    path = big_file(args.copies)
    size_mb = path.stat().st_size / 1e6
    print(f"file {path} ({size_mb:.1f} MB); CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    train_args = [
        str(path),
        "--base",
        "tinybase",
        "--max-steps",
        "2",
        "--log-every",
        "1",
        "--eval-split",
        "0.0005",
    ]
    rows = []
    if args.reference is not None:
        with tempfile.TemporaryDirectory() as home:
            make_base(args.reference.resolve(), Path(home))
            ref = timed_run(args.reference.resolve(), Path(home), [*train_args, "--name", "ref"])
            rows.append(("reference (no cache)", ref))
    with tempfile.TemporaryDirectory() as home:
        make_base(ROOT, Path(home))
        cold = timed_run(ROOT, Path(home), [*train_args, "--name", "cold"])
        warm = timed_run(ROOT, Path(home), [*train_args, "--name", "warm"])
    rows += [("ours, empty cache", cold), ("ours, cached tokens", warm)]
    print(f"{'case':<22} {'first step':>11} {'packing':>9} {'peak RSS':>9}")
    for label, row in rows:
        print(f"{label:<22} {row['first_step']:>9.1f} s {row['packing']:>7.1f} s {row['peak_rss']:>6.2f} GB")
    budget = cold["first_step"] - cold["packing"] + 2.0
    print(
        f"packing speed: {size_mb / cold['packing']:.1f} MB/s ({size_mb:.1f} MB in {cold['packing']:.1f} s)"
    )
    print(f"cached first step {warm['first_step']:.1f} s vs budget {budget:.1f} s (first run minus packing + 2 s): "
          f"{'met' if warm['first_step'] <= budget and warm['cached'] else 'MISSED'}")  # fmt: skip
    peak = max(cold["peak_rss"], warm["peak_rss"])
    print(f"peak RSS {peak:.2f} GB (target < 2 GB: {'met' if peak < 2 else 'MISSED'})")
    if args.reference is not None:
        ref = rows[0][1]
        print(f"ratios vs reference: first step cold {cold['first_step'] / ref['first_step']:.2f}x, "
              f"cached {warm['first_step'] / ref['first_step']:.2f}x; peak RSS {peak / ref['peak_rss']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
