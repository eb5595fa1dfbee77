"""Held-out loss and perplexity, with the same packing training uses."""

from __future__ import annotations

import dataclasses
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
    from gpt2tui.core.generation import GenerationSettings, LoadedModel
    from gpt2tui.core.metrics import GenerationMetrics
    from gpt2tui.core.packing import Packed
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
    generation: GenerationMetrics | None = field(default=None, compare=False)  # --generate N
    decoding: dict[str, Any] = field(default_factory=dict, compare=False)  # the settings replies used
    seed: int | None = field(default=None, compare=False)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "tokens_per_second": self.tokens_per_second}
        data["generation"] = self.generation.to_dict() if self.generation is not None else None
        return data


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
    replies: int = 0,
    settings: GenerationSettings | None = None,
    on_reply: Progress | None = None,
    on_pack: Callable[[], None] | None = None,
) -> EvalResult:
    """Perplexity of a model on every block of a dataset file; with ``replies`` > 0, also the generation
    metrics of that many replies to held-out prompts of the file (:func:`score_replies`)."""
    from gpt2tui.core.generation import load_resolved, resolve
    from gpt2tui.core.packing import BlockRows, Source, pack

    info = resolve(ref)
    source = Source(spec)  # a bad file is refused before any weights load
    loaded = load_resolved(info)
    model, tokenizer, ctx = loaded.model, loaded.tokenizer, loaded.context_length
    size = block_size if block_size is not None else min(ctx, loaded.metadata.block_size or ctx)
    check_block_size(size, ctx)
    packed = pack(source, tokenizer, use_cache=use_cache, on_pack=on_pack)
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
    result = EvalResult(
        loss, perplexity_from_loss(loss), blocks * size, blocks, seconds, size, source.checked.sha256
    )
    if replies <= 0:
        return result
    from gpt2tui.core.generation import GenerationSettings

    settings = (settings or GenerationSettings(seed=0)).validate()
    if settings.seed is None:
        settings = settings.replace(seed=0)  # scores are only comparable with a fixed seed
    metrics = score_replies(loaded, packed, replies, settings, on_reply)
    return dataclasses.replace(result, generation=metrics, decoding=settings.to_record(), seed=settings.seed)


@dataclass(frozen=True)
class HeldOutPrompt:
    """A prompt taken from the file and what followed it there (None when nothing can be compared)."""

    prompt: str
    reference: str | None


PASSAGE_PROMPT_TOKENS = 32
"""Plain text: a passage's first tokens (at most this many, at most half the passage) are the prompt."""


def held_out_prompts(
    loaded: LoadedModel, packed: Packed, count: int, seed: int, max_new_tokens: int
) -> list[HeldOutPrompt]:
    """``count`` rows chosen by ``seed`` among those the model never trained on: when it was trained on this
    very file, the rows that begin in its held-out blocks (same block size, split and seed); otherwise any.

    Question/answer and prompt/completion rows give their prompt and, as the reference, their answer; a plain
    text passage gives its first tokens and, as the reference, the tokens that followed."""
    import random

    import numpy as np

    from gpt2tui.core.packing import split

    data = packed.source.data()
    candidates = list(range(data.rows))
    meta = loaded.metadata
    hyper = meta.hyperparameters
    eos = loaded.tokenizer.eos_token_id
    ends = np.flatnonzero(packed.ids == eos) if eos is not None else np.zeros(0)
    if meta.dataset.sha256 == packed.sha256 and len(ends) == data.rows and hyper.get("block_size"):
        size = int(hyper["block_size"])
        held = set(split(packed, size, float(hyper["eval_split"]), int(hyper["seed"])).eval.tolist())
        starts = np.concatenate([[0], ends[:-1] + 1])
        inside = [i for i in candidates if int(starts[i]) // size in held]
        candidates = inside or candidates
    chosen = sorted(random.Random(seed).sample(candidates, min(count, len(candidates))))
    picked = data.dataset.select(chosen)
    kind = packed.formatting.kind
    template = packed.formatting.prompt_template or "{prompt}"
    prompts = []
    for text, prompt in zip(picked["text"], picked["prompt"], strict=True):
        if kind == "text":
            ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
            cut = max(1, min(PASSAGE_PROMPT_TOKENS, len(ids) // 2))
            rest = ids[cut : cut + max_new_tokens]
            reference = loaded.tokenizer.decode(rest) if rest else None
            prompts.append(HeldOutPrompt(loaded.tokenizer.decode(ids[:cut]), reference))
        else:
            shown = template.format(prompt=prompt)
            reference = text[len(shown) :].strip() if text.startswith(shown) else None
            prompts.append(HeldOutPrompt(prompt, reference or None))
    return prompts


def score_replies(
    loaded: LoadedModel,
    packed: Packed,
    count: int,
    settings: GenerationSettings,
    on_reply: Progress | None = None,
) -> GenerationMetrics:
    """Generate one reply per held-out prompt (the model's own template and stop text, ``settings`` with its
    fixed seed) and score them; token log-probabilities come from the generation itself, under the model's own
    distribution (before temperature, top-k and top-p)."""
    from gpt2tui.core.generation import stream
    from gpt2tui.core.metrics import ScoredReply, generation_metrics

    prompts = held_out_prompts(loaded, packed, count, settings.seed or 0, settings.max_new_tokens)
    scored = []
    for done, item in enumerate(prompts, start=1):
        reply_stream = stream(
            loaded.model,
            loaded.tokenizer,
            item.prompt,
            settings,
            template=loaded.template,
            stop_text=loaded.stop_text,
        )
        text = "".join(reply_stream)
        reply = reply_stream.reply
        shown = reply.shown_tokens
        # Coherence is the model's own view of its reply: the log-probabilities before temperature, top-k and
        # top-p reshaped the distribution for sampling.
        logprobs = reply.model_logprobs[:shown]
        scored.append(ScoredReply([t for t, _ in reply.tokens[:shown]], logprobs, text, item.reference))
        if on_reply is not None:
            on_reply(done, len(prompts))
    return generation_metrics(scored)


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
    if result.generation is not None:
        figures = {k: v for k, v in result.generation.to_dict().items() if hasattr(record, k)}
        record = dataclasses.replace(record, seed=result.seed, decoding=dict(result.decoding), **figures)
    return store.record_evaluation(ref, record)


def check_block_size(block_size: int, context: int) -> None:
    if block_size < 2:
        raise UserError(f"--block-size must be at least 2, not {block_size}.")
    if block_size > context:
        raise UserError(
            f"--block-size {block_size} is larger than the model's context length ({context} tokens).",
            problem=f"A block size of {block_size} is larger than the model's context length ({context} tokens)",
            fix="block_size",
            largest=context,
        )
