"""Fine-tuning, readable top to bottom: validate, load, pack, evaluate, train, evaluate, store.

One loop over optimizer steps with ``accelerate`` doing device placement, mixed precision and gradient
accumulation (HF ``run_clm_no_trainer``'s shape). Progress leaves only as :mod:`gpt2tui.core.events`, and a
``threading.Event`` ends the run at the next step with the model still saved.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2tui import __version__
from gpt2tui.core.data import (
    DatasetSummary,
    DataSpec,
    LoadedData,
    check_eval_split,
    load_data,
    pack_blocks,
    split_blocks,
    summarize,
)
from gpt2tui.core.errors import UserError
from gpt2tui.core.evaluation import EVAL_BATCH_SIZE, check_block_size, perplexity_from_loss
from gpt2tui.core.events import (
    EvalFinished,
    EventCallback,
    RunFailed,
    RunFinished,
    RunStarted,
    StepLogged,
    TrainingEvent,
)
from gpt2tui.core.models import ResolvedBase, base_kind, check_scratch_size, count_parameters, resolve_base
from gpt2tui.core.store import ModelStore

if TYPE_CHECKING:
    from accelerate import Accelerator

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything that defines a run; defaults suit a small fine-tune."""

    data: DataSpec
    base: str = "gpt2"  # Hub id, local folder, stored model name, or "scratch"
    scratch_size: str = "tiny"  # scratch only: tiny | small | gpt2
    name: str | None = None  # stored model name; default <dataset>-<base>
    epochs: float = 3.0  # ignored when max_steps is set
    max_steps: int | None = None  # optimizer steps
    block_size: int | None = None  # tokens per training sequence; default from the base
    batch_size: int = 8  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # default 5e-5 for pretrained bases, higher for scratch
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05  # share of steps spent warming the learning rate up
    max_grad_norm: float = 1.0
    eval_split: float = 0.1  # share of blocks held out
    eval_every: int = 0  # optimizer steps between evals (0: only before and after)
    log_every: int = 10  # optimizer steps between StepLogged events
    seed: int = 42
    mixed_precision: str = "auto"  # auto (bf16/fp16 on a capable GPU, else fp32) | no | bf16 | fp16
    sample_prompt: str | None = None  # generate from this at each eval, so progress can be read
    sample_tokens: int = 40

    def validate(self) -> None:
        """Refuse bad numbers before any file is read or model is loaded."""
        positive = {
            "--batch-size": self.batch_size,
            "--grad-accum": self.grad_accum,
            "--log-every": self.log_every,
        }
        for option, value in positive.items():
            if value < 1:
                raise UserError(f"{option} must be at least 1, not {value}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError(f"--max-steps must be at least 1, not {self.max_steps}.")
        if self.max_steps is None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise UserError(f"--epochs must be a number greater than 0, not {self.epochs}.")
        if self.block_size is not None and self.block_size < 2:
            raise UserError(f"--block-size must be at least 2, not {self.block_size}.")
        if self.lr is not None and not (0 < self.lr < 1):
            raise UserError(f"--lr must be between 0 and 1, not {self.lr}.")
        if self.eval_every < 0:
            raise UserError(f"--eval-every must be 0 or more, not {self.eval_every}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}.")
        check_eval_split(self.eval_split)
        if self.base == "scratch":
            check_scratch_size(self.scratch_size)


def _emit(on_event: EventCallback | None, event: TrainingEvent) -> None:
    if on_event is not None:
        on_event(event)


def train(
    config: TrainConfig,
    on_event: EventCallback | None = None,
    stop: threading.Event | None = None,
    store: ModelStore | None = None,
) -> RunFinished:
    """Run a fine-tune and store the model; raises :class:`UserError` (after a ``RunFailed`` event) on failure."""
    store = store or ModelStore()  # reads nothing and creates nothing until a model is saved
    _prefetch_hub_probe(config.base, store)
    try:
        return _train(config, on_event, stop or threading.Event(), store)
    except UserError as err:
        _emit(on_event, RunFailed(str(err)))
        raise
    except Exception as err:
        message = _describe_failure(err)
        _emit(on_event, RunFailed(message))
        raise UserError(message) from err


def _describe_failure(err: Exception) -> str:
    text = str(err)
    if "out of memory" in text.lower():
        return "The GPU ran out of memory; lower --batch-size or --block-size (or raise --grad-accum)."
    first = text.splitlines()[0] if text else ""
    return f"Training failed: {type(err).__name__}: {first}".rstrip(": ") + "."


def _train(
    config: TrainConfig, on_event: EventCallback | None, stop: threading.Event, store: ModelStore
) -> RunFinished:
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from gpt2tui.core.evaluation import eval_loader, loss_over

    started = time.perf_counter()
    config.validate()
    if config.name is not None:
        store.require_free(config.name)
    data = load_data(config.data)
    set_seed(config.seed)
    base = _resolve_base(config, data, store)
    block_size = config.block_size if config.block_size is not None else base.default_block_size
    check_block_size(block_size, base.context_length)
    packed = pack_blocks(data, base.tokenizer, block_size)
    train_blocks, eval_blocks = split_blocks(packed, config.eval_split, config.seed, str(config.data.path))
    name = config.name or store.unique_name(f"{Path(config.data.path).stem}-{_base_label(config)}")
    lr = config.lr if config.lr is not None else base.default_lr

    accelerator = _accelerator(config)
    if not accelerator.is_main_process:
        on_event = None  # one progress stream, from the main process, under accelerate launch
    train_loader = DataLoader(
        torch.tensor(train_blocks, dtype=torch.long),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = torch.optim.AdamW(_param_groups(base.model, config.weight_decay), lr=lr)
    model, optimizer, train_loader, evals = accelerator.prepare(
        base.model, optimizer, train_loader, eval_loader(eval_blocks, EVAL_BATCH_SIZE)
    )
    # Counted after prepare: under accelerate launch each process sees its share of the batches.
    steps_per_epoch = max(1, math.ceil(len(train_loader) / config.grad_accum))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = int(total_steps * config.warmup_ratio)
    scheduler = accelerator.prepare(
        get_linear_schedule_with_warmup(
            optimizer, warmup * accelerator.num_processes, total_steps * accelerator.num_processes
        )
    )
    tokens_per_step = config.batch_size * config.grad_accum * block_size * accelerator.num_processes

    _emit(
        on_event,
        RunStarted(
            name=name,
            base=config.base,
            device=str(accelerator.device),
            mixed_precision=accelerator.mixed_precision,
            total_steps=total_steps,
            train_blocks=len(train_blocks),
            eval_blocks=len(eval_blocks),
            block_size=block_size,
            tokens_per_step=tokens_per_step,
            parameters=count_parameters(model),
        ),
    )

    def evaluate(step: int) -> float:
        loss = loss_over(model, evals, accelerator)
        sample = None
        if config.sample_prompt and accelerator.is_main_process:
            sample = _sample(accelerator.unwrap_model(model), base, config, data)
        _emit(
            on_event, EvalFinished(step=step, loss=loss, perplexity=perplexity_from_loss(loss), sample=sample)
        )
        return loss

    loss_before = evaluate(0)
    step, window, window_n, trained_tokens, nonfinite = 0, 0.0, 0, 0, None
    loop_start = time.perf_counter()
    eval_seconds = 0.0  # time spent in --eval-every evals, left out of tokens/s and the ETA
    halt = _agreed(accelerator, stop.is_set())
    model.train()
    while step < total_steps and not halt:
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            value = float(loss.detach())
            if not math.isfinite(value) and nonfinite is None:
                nonfinite = value
            window += value
            window_n += 1
            trained_tokens += batch.numel() * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            step += 1
            # Every process must take the same decision, or the others wait forever in the next all-reduce.
            if _agreed(accelerator, nonfinite is not None):
                raise UserError(
                    f"Training stopped at step {step}: the loss became "
                    f"{nonfinite if nonfinite is not None else 'nan'}; lower the learning rate (--lr, now {lr:g})."
                )
            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - loop_start - eval_seconds
                _emit(
                    on_event,
                    StepLogged(
                        step=step,
                        total_steps=total_steps,
                        epoch=step / steps_per_epoch,
                        loss=window / window_n,
                        learning_rate=scheduler.get_last_lr()[0],
                        tokens_per_second=trained_tokens / max(elapsed, 1e-9),
                        elapsed_seconds=elapsed,
                        eta_seconds=elapsed / step * (total_steps - step),
                    ),
                )
                window, window_n = 0.0, 0
            if config.eval_every and step % config.eval_every == 0 and step < total_steps:
                eval_started = time.perf_counter()
                evaluate(step)
                eval_seconds += time.perf_counter() - eval_started
            halt = _agreed(accelerator, stop.is_set())
            if step >= total_steps or halt:
                break
    train_seconds = time.perf_counter() - loop_start - eval_seconds
    if step == 0:
        raise UserError("The run was stopped before its first training step; no model was saved.")
    stopped = step < total_steps
    loss_after = evaluate(step)

    accelerator.wait_for_everyone()
    result = RunFinished(
        name=name,
        path=str(store.path_for(name)),
        steps=step,
        stopped=stopped,
        eval_loss_before=loss_before,
        eval_loss_after=loss_after,
        perplexity_before=perplexity_from_loss(loss_before),
        perplexity_after=perplexity_from_loss(loss_after),
        train_tokens=trained_tokens,
        tokens_per_second=trained_tokens / max(train_seconds, 1e-9),
        seconds=time.perf_counter() - started,
    )
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        metadata = build_metadata(
            config,
            base,
            data,
            result,
            block_size,
            lr,
            total_steps,
            str(accelerator.device),
            accelerator.mixed_precision,
            len(train_blocks),
            len(eval_blocks),
            packed.tokens,
        )
        generation_config = _generation_config(base)

        def write(folder: Path) -> None:
            unwrapped.generation_config = generation_config
            unwrapped.save_pretrained(folder)
            base.tokenizer.save_pretrained(folder)

        store.save(name, write, metadata, model_card(metadata))
    accelerator.wait_for_everyone()
    _emit(on_event, result)
    return result


def _prefetch_hub_probe(base: str, store: ModelStore) -> None:
    """Start the Hub probe first thing, overlapping imports and data loading, when the base will need it."""
    from gpt2tui.core.models import hub_cached, hub_offline, start_hub_probe

    if base_kind(base) == "hub" and not store.has(base) and not hub_offline() and not hub_cached(base):
        start_hub_probe()


def _agreed(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process if it is true on any (free with one process)."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def preview(
    spec: DataSpec,
    base: str = "scratch",
    scratch_size: str = "tiny",
    block_size: int | None = None,
    eval_split: float = 0.1,
    seed: int = 42,
) -> DatasetSummary:
    """The dataset summary training would see, with the tokenizer of ``base`` (no weights are loaded).

    Raises the same :class:`UserError` training would for a bad file, block size or too-small dataset.
    """
    from gpt2tui.core.models import resolve_tokenizer

    check_eval_split(eval_split)
    data = load_data(spec)
    info = resolve_tokenizer(base, data.texts() if base == "scratch" else None, scratch_size)
    size = block_size or info.default_block_size
    check_block_size(size, info.context_length)
    return summarize(data, info.tokenizer, size, eval_split, seed)


def _resolve_base(config: TrainConfig, data: LoadedData, store: ModelStore) -> ResolvedBase:
    """A stored model's name is a base too, so a fine-tune can continue from an earlier one."""
    base = config.base
    if base_kind(base) == "hub" and store.has(base):
        resolved = resolve_base(str(store.root / base))
        resolved.base = base
        return resolved
    return resolve_base(base, data.texts() if base == "scratch" else None, config.scratch_size, config.seed)


def _base_label(config: TrainConfig) -> str:
    if config.base == "scratch":
        return f"scratch-{config.scratch_size}"
    return Path(config.base.rstrip("/")).name


def _accelerator(config: TrainConfig) -> Accelerator:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    precision = config.mixed_precision
    if precision == "auto":
        if torch.cuda.is_available():
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "no"
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on a CPU.")
    # Accelerate keeps process-wide state; a second run in the same process (the TUI) must start clean.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and layer norms (as in nanoGPT and run_clm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "ln_" in name or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _sample(model: Any, base: ResolvedBase, config: TrainConfig, data: LoadedData) -> str:
    """A fixed-seed sample in eval mode (no dropout), leaving the training RNG exactly as it was."""
    import torch

    from gpt2tui.core.generation import GenerationSettings, complete

    settings = GenerationSettings(
        strategy="top-k", top_k=40, temperature=0.8, max_new_tokens=config.sample_tokens, seed=0
    )
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            return complete(
                model,
                base.tokenizer,
                config.sample_prompt or "",
                settings,
                template=data.formatting.prompt_template,
                stop_text=data.formatting.stop_text,
            )
    finally:
        model.train(was_training)


def _generation_config(base: ResolvedBase) -> Any:
    from transformers import GenerationConfig

    eos = base.tokenizer.eos_token_id
    return GenerationConfig(
        do_sample=True,
        top_k=50,
        top_p=0.95,
        temperature=0.8,
        max_new_tokens=100,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def build_metadata(
    config: TrainConfig,
    base: ResolvedBase,
    data: LoadedData,
    result: RunFinished,
    block_size: int,
    lr: float,
    total_steps: int,
    device: str,
    mixed_precision: str,
    train_blocks: int,
    eval_blocks: int,
    tokens: int,
) -> dict[str, Any]:
    """Machine-readable record of the run, stored as ``gpt2tui.json`` beside the weights."""
    return {
        "name": result.name,
        "gpt2tui_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base": config.base,
        "base_kind": base.kind,
        "scratch_size": base.scratch_size,
        "dataset": {
            "path": str(Path(config.data.path).expanduser().resolve()),
            "format": data.format,
            "sha256": data.sha256,
            "rows": data.rows,
            "tokens": tokens,
            "train_blocks": train_blocks,
            "eval_blocks": eval_blocks,
            "encoding": config.data.encoding,
        },
        "formatting": {
            "kind": data.formatting.kind,
            "columns": list(data.formatting.columns),
            "prompt_template": data.formatting.prompt_template,
            "stop_text": data.formatting.stop_text,
        },
        "hyperparameters": {
            "block_size": block_size,
            "batch_size": config.batch_size,
            "grad_accum": config.grad_accum,
            "lr": lr,
            "weight_decay": config.weight_decay,
            "warmup_ratio": config.warmup_ratio,
            "max_grad_norm": config.max_grad_norm,
            "epochs": config.epochs,
            "max_steps": config.max_steps,
            "planned_steps": total_steps,
            "eval_split": config.eval_split,
            "seed": config.seed,
            "mixed_precision": mixed_precision,
        },
        "block_size": block_size,
        "device": device,
        "steps": result.steps,
        "stopped": result.stopped,
        "eval_loss_before": result.eval_loss_before,
        "eval_loss_after": result.eval_loss_after,
        "perplexity_before": result.perplexity_before,
        "perplexity_after": result.perplexity_after,
        "train_tokens": result.train_tokens,
        "tokens_per_second": result.tokens_per_second,
        "seconds": result.seconds,
    }


def model_card(meta: dict[str, Any]) -> str:
    """A human-readable README.md in the Hub's model-card style."""
    hp = meta["hyperparameters"]
    ds = meta["dataset"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in hp.items())
    stopped = " (stopped early by the user)" if meta["stopped"] else ""
    return f"""---
library_name: transformers
pipeline_tag: text-generation
base_model: {meta["base"] if meta["base_kind"] == "hub" else "null"}
tags: [gpt2, gpt2tui]
---

# {meta.get("name", "gpt2tui model")}

GPT-2 fine-tuned with [gpt2tui](https://pypi.org/project/gpt2tui/) on {meta["created"]}.

- **Base:** {meta["base"]} ({meta["base_kind"]}{", size " + meta["scratch_size"] if meta["scratch_size"] else ""})
- **Dataset:** `{Path(ds["path"]).name}` ({ds["format"]}, {ds["rows"]} rows, {ds["tokens"]} tokens, sha256 `{ds["sha256"]}`)
- **Formatting:** {meta["formatting"]["kind"]}
- **Steps:** {meta["steps"]} of {hp["planned_steps"]}{stopped}, {meta["train_tokens"]} tokens on {meta["device"]}

## Evaluation (held-out {hp["eval_split"]:.0%} of blocks)

| | loss | perplexity |
|---|---|---|
| before | {meta["eval_loss_before"]:.4f} | {meta["perplexity_before"]:.2f} |
| after | {meta["eval_loss_after"]:.4f} | {meta["perplexity_after"]:.2f} |

## Hyperparameters

| name | value |
|---|---|
{rows}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```
"""
