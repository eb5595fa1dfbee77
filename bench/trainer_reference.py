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

    from gpt2tui.core.data import DataSpec, load_data, pack_blocks, split_blocks
    from gpt2tui.core.models import resolve_base
    from gpt2tui.core.quiet import quiet_environment, route_library_logs

    quiet_environment()
    route_library_logs(None)
    torch.set_num_threads(threads)
    data = load_data(DataSpec(file))
    base = resolve_base("scratch", data.texts(), size, 42)
    packed = pack_blocks(data, base.tokenizer, base.default_block_size)
    train, _ = split_blocks(packed, 0.1, 42, file)
    rows = [{"input_ids": block, "labels": block} for block in train]
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
