"""The reference for the training benchmarks: HF ``Trainer`` on the job ``gpt2tui train`` does.

Same file, same scratch model and tokenizer (built by gpt2tui's core), same packed train blocks, batch 8,
the same number of optimizer steps, fp32 on the CPU (``--bf16``: ``TrainingArguments(bf16=True)``; ``--device
cuda``: on the GPU, as ``bench/gpu_training.py`` runs it), default ``TrainingArguments`` otherwise. Prints the training tokens/s (tokens trained over ``train_runtime``) as its
last line; ``--json`` prints one object instead, which also holds the tokens/s of the training loop alone
(from ``on_train_begin`` to ``on_train_end``, as gpt2tui's own figure excludes its set-up and evaluations)
and the CPU seconds of its median step (``on_step_begin`` to ``on_step_end``).

    python bench/trainer_reference.py FILE SIZE STEPS THREADS [--bf16] [--json] [--device cuda]
        [--block-size N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file")
    parser.add_argument("size", choices=("tiny", "small", "gpt2"))
    parser.add_argument("steps", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("--bf16", action="store_true", help="TrainingArguments(bf16=True)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--block-size", type=int, default=None, help="default: the scratch size's")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads, as a user of Trainer would set it
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from gpt2tui.core.data import DataSpec
    from gpt2tui.core.models import check_scratch_size, resolve_base
    from gpt2tui.core.packing import Source, pack, scratch_tokenizer, split
    from gpt2tui.core.quiet import quiet_environment, route_library_logs

    quiet_environment()
    route_library_logs(None)
    torch.set_num_threads(args.threads)
    source, shape = Source(DataSpec(args.file)), check_scratch_size(args.size)
    tokenizer = scratch_tokenizer(source, shape.vocab_size, shape.n_positions, use_cache=False)
    base = resolve_base("scratch", None, args.size, 42, tokenizer=tokenizer)
    packed = pack(source, base.tokenizer, use_cache=False)
    block_size = args.block_size or base.default_block_size
    blocks = packed.blocks(block_size)
    train = split(packed, block_size, 0.1, 42).train
    rows = [{"input_ids": blocks[i].tolist(), "labels": blocks[i].tolist()} for i in train]
    marks: dict[str, float] = {}
    step_cpu: list[float] = []

    class LoopClock(TrainerCallback):
        """The training loop's own start and end, inside ``train_runtime``, and each step's CPU seconds."""

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            marks["begin"] = time.perf_counter()

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            marks["step"] = time.process_time()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            step_cpu.append(time.process_time() - marks["step"])

        def on_train_end(self, *_: Any, **__: Any) -> None:
            marks["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=base.default_lr,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=args.device == "cpu",
            disable_tqdm=True,
            bf16=args.bf16,
        )
        trainer = Trainer(model=base.model, args=arguments, train_dataset=rows, callbacks=[LoopClock()])
        metrics = trainer.train().metrics
    tokens = args.steps * args.batch_size * block_size
    runtime = tokens / metrics["train_runtime"]
    if args.json:
        loop = tokens / (marks["end"] - marks["begin"])
        cpu = statistics.median(step_cpu[2:] or step_cpu)  # as bench/cpu_training.py times gpt2tui's steps
        print(
            json.dumps(
                {"tokens_per_second": runtime, "loop_tokens_per_second": loop, "step_cpu_seconds": cpu}
            )
        )
    else:
        print(runtime)


if __name__ == "__main__":
    main()
