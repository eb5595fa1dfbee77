"""Evaluation speed: ``gpt2tui eval``'s loss loop against the reference perplexity loop.

The reference is the plainest fast loop: the same model and the same packed blocks, batched forward passes
in ``torch.inference_mode``, mean of the batch losses. Ours is ``evaluate_file``'s own timing of its loop
(loading and packing excluded from both). Interleaved, repeated, median reported.

    python bench/eval_speed.py [--size tiny|small] [--file PATH] [--repeats N]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="small", choices=("tiny", "small"))
    parser.add_argument("--file", type=Path, default=ROOT / "sample_data" / "kjv_sample.txt")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["GPT2TUI_HOME"] = home
        command = [sys.executable, "-m", "gpt2tui", "train", str(args.file), "--base", "scratch"]
        command += ["--scratch-size", args.size, "--max-steps", "1", "--name", "m", "--save-every", "0"]
        subprocess.run(command, check=True, capture_output=True)
        import torch

        from gpt2tui.core.data import DataSpec
        from gpt2tui.core.evaluation import EVAL_BATCH_SIZE, evaluate_file
        from gpt2tui.core.models import load_model
        from gpt2tui.core.packing import Source, pack
        from gpt2tui.core.store import ModelStore

        print(
            f"cpu capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}"
        )
        info = ModelStore().get("m")
        model, tokenizer = load_model(info.path)
        block = info.metadata.block_size or 128
        blocks = torch.from_numpy(
            pack(Source(DataSpec(str(args.file))), tokenizer).blocks(block).astype("int64")
        )

        def reference() -> float:
            started = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(blocks), EVAL_BATCH_SIZE):
                    batch = blocks[i : i + EVAL_BATCH_SIZE]
                    model(input_ids=batch, labels=batch).loss.item()
            return blocks.numel() / (time.perf_counter() - started)

        ours, ref = [], []
        for _ in range(args.repeats):
            ref.append(reference())
            ours.append(evaluate_file("m", DataSpec(str(args.file))).tokens_per_second)
    print(f"{args.size}: {len(blocks)} blocks of {block} tokens, median of {args.repeats}")
    print(f"  reference loop  {statistics.median(ref):>10,.0f} tok/s  {[round(v) for v in ref]}")
    print(f"  gpt2tui eval    {statistics.median(ours):>10,.0f} tok/s  {[round(v) for v in ours]}")
    print(f"  ratio           {statistics.median(ours) / statistics.median(ref):.2f}x (target >= 0.9)")


if __name__ == "__main__":
    main()
