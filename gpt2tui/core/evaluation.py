"""Held-out loss and perplexity, with the same packing training uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gpt2tui.core.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedModel

    from gpt2tui.core.data import DataSpec
    from gpt2tui.core.store import ModelInfo

EVAL_BATCH_SIZE = 8


@dataclass(frozen=True)
class EvalResult:
    loss: float
    perplexity: float
    tokens: int
    blocks: int
    seconds: float = field(default=0.0, compare=False)  # the forward passes only (not loading, packing)
    block_size: int = field(default=0, compare=False)
    dataset_sha256: str | None = field(default=None, compare=False)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


Progress = Callable[[int, int], None]
"""Called with (blocks done, blocks in all) after each batch."""


def perplexity_from_loss(loss: float) -> float:
    """``exp(loss)``, infinite instead of an overflow error for a diverged model."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def eval_loader(rows: Any, batch_size: int = EVAL_BATCH_SIZE) -> Any:
    """Blocks in a fixed order, batched for evaluation; ``rows`` is a :class:`BlockRows` (read on demand from
    the token cache) or anything indexable by row."""
    from torch.utils.data import DataLoader

    return DataLoader(rows, batch_size=batch_size, shuffle=False)


def loss_over(
    model: PreTrainedModel,
    loader: Any,
    accelerator: Accelerator | None = None,
    on_progress: Progress | None = None,
) -> float:
    """Mean next-token loss over a loader (each block weighs the same, as each holds the same tokens).

    ``inference_mode`` rather than ``no_grad``: no autograd bookkeeping at all on the tensors it makes."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count, done = 0.0, 0, 0
    size = len(loader.dataset) if hasattr(loader, "dataset") else 0
    with torch.inference_mode():
        for batch in loader:
            batch = batch.to(device)
            loss = model(input_ids=batch, labels=batch).loss.float()
            losses = loss.repeat(batch.shape[0])
            if accelerator is not None:
                losses = accelerator.gather_for_metrics(losses)
            total += float(losses.sum())
            count += int(losses.numel())
            done += int(batch.shape[0])
            if on_progress is not None:
                on_progress(done, size)
    model.train(was_training)
    return total / max(count, 1)


def evaluate_file(
    ref: str,
    spec: DataSpec,
    block_size: int | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    on_progress: Progress | None = None,
    use_cache: bool = True,
) -> EvalResult:
    """Perplexity of a stored model (or model folder) on every block of a dataset file."""
    from gpt2tui.core.generation import load_resolved, resolve
    from gpt2tui.core.packing import BlockRows, Source, pack

    info = resolve(ref)
    source = Source(spec)  # a bad file is refused before any weights load
    loaded = load_resolved(info)
    model, tokenizer, ctx = loaded.model, loaded.tokenizer, loaded.context_length
    size = block_size if block_size is not None else min(ctx, info.metadata.block_size or ctx)
    check_block_size(size, ctx)
    packed = pack(source, tokenizer, use_cache=use_cache)
    rows = packed.blocks(size)
    if not len(rows):
        raise UserError(
            f"{spec.path} has {packed.tokens} tokens, fewer than one block of {size}; "
            f"use --block-size {packed.tokens} or less."
        )
    started = time.perf_counter()
    loss = loss_over(model, eval_loader(BlockRows(rows), batch_size), on_progress=on_progress)
    seconds = time.perf_counter() - started
    blocks = len(rows)
    return EvalResult(
        loss, perplexity_from_loss(loss), blocks * size, blocks, seconds, size, source.checked.sha256
    )


def store_result(ref: str, spec: DataSpec, result: EvalResult) -> ModelInfo | None:
    """Keep ``result`` with the model when ``ref`` names a stored model (its metadata and card); a folder
    named by its path is not the store's to write, so it is left as it is (None)."""
    from datetime import datetime, timezone
    from pathlib import Path

    from gpt2tui.core.card import EvaluationRecord
    from gpt2tui.core.store import ModelStore

    store = ModelStore()
    if not store.has(ref):
        return None
    record = EvaluationRecord(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dataset=Path(spec.path).name,
        dataset_path=str(Path(spec.path).expanduser().resolve()),
        dataset_sha256=result.dataset_sha256,
        block_size=result.block_size,
        blocks=result.blocks,
        tokens=result.tokens,
        loss=result.loss if math.isfinite(result.loss) else None,
        perplexity=result.perplexity if math.isfinite(result.perplexity) else None,
    )
    return store.record_evaluation(ref, record)


def check_block_size(block_size: int, context: int) -> None:
    if block_size < 2:
        raise UserError(f"--block-size must be at least 2, not {block_size}.")
    if block_size > context:
        raise UserError(
            f"--block-size {block_size} is larger than the model's context length ({context} tokens)."
        )
