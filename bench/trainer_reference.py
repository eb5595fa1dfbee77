"""The reference for the training benchmarks: HF ``Trainer`` on the job ``gpt2tui train`` does.

Same file, same scratch model and tokenizer (built by gpt2tui's core), same packed train blocks, batch 8,
the same number of optimizer steps, fp32 on the CPU, default ``TrainingArguments`` otherwise. Prints the
training tokens/s (tokens trained over ``train_runtime``) as its last line.

    python bench/trainer_reference.py FILE SIZE STEPS THREADS
"""

from __future__ import annotations

import os
import sys
import tempfile


def main() -> None:
    file, size, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch loads, as a user of Trainer would set it
    import torch
    from transformers import Trainer, TrainingArguments

    from gpt2tui.core.data import DataSpec
    from gpt2tui.core.models import check_scratch_size, resolve_base
    from gpt2tui.core.packing import Source, pack, scratch_tokenizer, split
    from gpt2tui.core.quiet import quiet_environment, route_library_logs

    quiet_environment()
    route_library_logs(None)
    torch.set_num_threads(threads)
    source, shape = Source(DataSpec(file)), check_scratch_size(size)
    tokenizer = scratch_tokenizer(source, shape.vocab_size, shape.n_positions, use_cache=False)
    base = resolve_base("scratch", None, size, 42, tokenizer=tokenizer)
    packed = pack(source, base.tokenizer, use_cache=False)
    blocks = packed.blocks(base.default_block_size)
    train = split(packed, base.default_block_size, 0.1, 42).train
    rows = [{"input_ids": blocks[i].tolist(), "labels": blocks[i].tolist()} for i in train]
    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=8,
            max_steps=steps,
            learning_rate=base.default_lr,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        )
        metrics = Trainer(model=base.model, args=arguments, train_dataset=rows).train().metrics
    print(steps * 8 * base.default_block_size / metrics["train_runtime"])


if __name__ == "__main__":
    main()
