"""Fine-tuning, readable top to bottom: prepare (data, base, optimizer), one flat loop keyed on the step
number, then finish (evaluate and store). nanoGPT's ``train.py`` is the model.

Batches come from a per-epoch permutation indexed by the micro-batch number, so resuming at step N skips the
batches already seen in O(1), and a checkpoint holds everything else the loop's future depends on (weights,
optimizer, scheduler, RNG states, counters): a resumed run ends with the weights an uninterrupted one would.
Progress leaves only as :mod:`gpt2tui.core.events`, and a ``threading.Event`` ends the run at the next step
with a checkpoint and the model saved.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2tui import __version__
from gpt2tui.core.card import DatasetRecord, FormattingRecord, ModelMetadata
from gpt2tui.core.config import MIXED_PRECISION, TrainConfig, check_total_steps
from gpt2tui.core.data import DatasetSummary, DataSpec, check_eval_split
from gpt2tui.core.device import keep_freed_memory
from gpt2tui.core.errors import UserError
from gpt2tui.core.evaluation import EVAL_BATCH_SIZE, check_block_size, perplexity_from_loss
from gpt2tui.core.events import (
    CheckpointSaved,
    EvalFinished,
    EventCallback,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopping,
    StepLogged,
    TrainingEvent,
)
from gpt2tui.core.models import ResolvedBase, base_kind, check_scratch_size, count_parameters, resolve_base
from gpt2tui.core.packing import BlockRows, Packed, Source, pack, scratch_tokenizer, split, summarize
from gpt2tui.core.store import ModelStore

if TYPE_CHECKING:
    from accelerate import Accelerator

    from gpt2tui.core.checkpoints import Checkpoint
    from gpt2tui.core.device import PrecisionChoice
    from gpt2tui.core.runs import Run

__all__ = ["MIXED_PRECISION", "TrainConfig", "preview", "train"]

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"


def is_main_process() -> bool:
    """Rank 0 under ``accelerate launch``/``torchrun`` (known before any process group exists)."""
    return os.environ.get("RANK", "0") == "0"


def train(
    config: TrainConfig,
    on_event: EventCallback | None = None,
    stop: threading.Event | None = None,
    store: ModelStore | None = None,
    run: Run | None = None,
    resume: bool = False,
) -> RunFinished:
    """Run a fine-tune and store the model; raises :class:`UserError` (after a ``RunFailed`` event) on failure.

    With ``run``, the main process also records every event in the run folder and checkpoints there;
    ``resume`` continues from its newest complete checkpoint.
    """
    from gpt2tui.core.runs import RunRecorder

    store = store or ModelStore()  # reads nothing and creates nothing until a model is saved
    recorder = RunRecorder(run) if run is not None and is_main_process() else None
    sinks = [s for s in (recorder, on_event if is_main_process() else None) if s is not None]

    def emit(event: TrainingEvent) -> None:
        for sink in sinks:
            sink(event)

    _prefetch_hub_probe(config.base, store)
    shape = ""
    try:
        job = prepare(config, store, run, resume)
        keep_freed_memory()  # after packing: only the loop's same-shaped steps profit (core/device.py)
        shape = f" with batch size {config.batch_size} and block size {job.block_size}"
        return Loop(job, emit, stop or threading.Event()).run()
    except UserError as err:
        emit(RunFailed(str(err)))
        raise
    except Exception as err:
        message = describe_failure(err, shape)
        emit(RunFailed(message))
        raise UserError(message) from err
    finally:
        if recorder is not None:
            recorder.close()


def describe_failure(err: BaseException, shape: str = "") -> str:
    """One sentence for an unexpected failure; out-of-memory says what was tried and what to lower."""
    text = str(err)
    if "out of memory" in text.lower() or type(err).__name__ == "OutOfMemoryError":
        return (
            f"The GPU ran out of memory{shape}; lower --batch-size (raising --grad-accum keeps the tokens per "
            "step) or --block-size."
        )
    first = text.splitlines()[0] if text else ""
    return f"Training failed: {type(err).__name__}: {first}".rstrip(": ") + "."


# ------------------------------------------------------------------------------------------------ prepare


@dataclass
class Job:
    """Everything built before the first step."""

    config: TrainConfig
    store: ModelStore
    run: Run | None
    data: Packed
    base: ResolvedBase
    name: str
    lr: float
    block_size: int
    tokens: int  # tokens in the file after formatting (the last partial block included)
    accelerator: Accelerator
    precision: PrecisionChoice  # what the run computes in, and why (shown in the run header)
    compiled: bool  # ``model`` runs through torch.compile (--compile)
    model: Any  # as prepared: the training step calls it
    optimizer: Any
    scheduler: Any
    blocks: Any  # every block of the file, [n, block_size]: a view of the memory-mapped token cache
    train_index: Any  # numpy indices of the train blocks among ``blocks``
    eval_loader: Any
    eval_blocks: int
    batches_per_epoch: int  # global micro-batches per pass over the train blocks
    total_steps: int
    checkpoint: Checkpoint | None  # resumed from

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.accelerator.num_processes

    @property
    def eager_model(self) -> Any:
        """``model`` without torch.compile's wrapper (the same parameters), for evaluation and samples: their
        shapes (eval batches, a growing generation) and eval mode would each compile anew, for a few forwards."""
        return self.model._orig_mod if self.compiled else self.model

    @property
    def plain_model(self) -> Any:
        """The model itself, unwrapped of compile, DDP and the rest: what is saved (no ``_orig_mod.`` keys)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    @property
    def steps_per_epoch(self) -> float:
        return self.batches_per_epoch / self.config.grad_accum


STOPPED_BEFORE_START = "The run was stopped before its first training step; no model was saved."


def prepare(config: TrainConfig, store: ModelStore, run: Run | None, resume: bool) -> Job:
    import torch
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    from gpt2tui.core.checkpoints import latest_checkpoint
    from gpt2tui.core.evaluation import eval_loader

    config.validate()
    checkpoint = latest_checkpoint(run.checkpoints_dir) if run is not None and resume else None
    if config.name is not None and not (run is not None and resume):
        store.require_free(config.name, run=run.id if run is not None else None)
    source = Source(config.data)
    set_seed(config.seed)
    base = _resolve_base(config, source, store, checkpoint)
    if config.dropout is not None:
        set_dropout(base.model, config.dropout)
    if config.fast_gelu:
        use_fast_gelu(base.model)
    block_size = config.block_size if config.block_size is not None else base.default_block_size
    check_block_size(block_size, base.context_length)
    packed = pack(source, base.tokenizer, use_cache=config.data_cache)
    parts = split(packed, block_size, config.eval_split, config.seed)
    blocks = packed.blocks(block_size)
    name = config.name or store.unique_name(f"{Path(config.data.path).stem}-{_base_label(config)}")
    lr = config.lr if config.lr is not None else base.default_lr

    accelerator, precision, compiled = _accelerator(config, base.model, checkpoint)
    optimizer = torch.optim.AdamW(
        _param_groups(base.model, config.weight_decay), lr=lr, fused=True if config.fused_adamw else None
    )
    model, optimizer, evals = accelerator.prepare(
        base.model, optimizer, eval_loader(BlockRows(blocks, parts.eval), EVAL_BATCH_SIZE)
    )
    global_batch = config.batch_size * accelerator.num_processes
    batches_per_epoch = max(1, math.ceil(len(parts.train) / global_batch))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * batches_per_epoch / config.grad_accum))
    check_total_steps(total_steps, config.epochs)
    # One scheduler step per optimizer step, on every process alike (not prepared: accelerate would step it
    # once per process).
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(total_steps * config.warmup_ratio), total_steps
    )
    return Job(
        config=config,
        store=store,
        run=run,
        data=packed,
        base=base,
        name=name,
        lr=lr,
        block_size=block_size,
        tokens=packed.tokens,
        accelerator=accelerator,
        precision=precision,
        compiled=compiled,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        blocks=blocks,
        train_index=parts.train,
        eval_loader=evals,
        eval_blocks=len(parts.eval),
        batches_per_epoch=batches_per_epoch,
        total_steps=total_steps,
        checkpoint=checkpoint,
    )


def _prefetch_hub_probe(base: str, store: ModelStore) -> None:
    """Start the Hub probe first thing, overlapping imports and data loading, when the base will need it."""
    from gpt2tui.core.models import hub_cached, hub_offline, start_hub_probe

    if base_kind(base) == "hub" and not store.has(base) and not hub_offline() and not hub_cached(base):
        start_hub_probe()


def _resolve_base(
    config: TrainConfig, source: Source, store: ModelStore, checkpoint: Checkpoint | None
) -> ResolvedBase:
    """A checkpoint's own weights and tokenizer when resuming; a stored model's name is a base too."""
    base = config.base
    if checkpoint is not None:
        from gpt2tui.core.models import load_local

        model, tokenizer = load_local(str(checkpoint.path))
        kind = base_kind(base) if not store.has(base) else "local"
        return ResolvedBase(model, tokenizer, base, kind, config.scratch_size if base == "scratch" else None)
    if base_kind(base) == "hub" and store.has(base):
        resolved = resolve_base(str(store.root / base))
        resolved.base = base
        return resolved
    tokenizer = None
    if base == "scratch":
        shape = check_scratch_size(config.scratch_size)
        if config.block_size is not None:  # refused before a tokenizer is trained (and cached)
            check_block_size(config.block_size, shape.n_positions)
        tokenizer = scratch_tokenizer(
            source, shape.vocab_size, shape.n_positions, use_cache=config.data_cache
        )
    return resolve_base(base, None, config.scratch_size, config.seed, tokenizer=tokenizer)


def set_dropout(model: Any, rate: float) -> None:
    """Every dropout layer and the config (so the saved model and a resume agree) use ``rate``."""
    import torch

    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, name):
            setattr(model.config, name, rate)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def use_fast_gelu(model: Any) -> int:
    """Compute GPT-2's ``gelu_new`` with torch's fused tanh GELU while training; returns how many were swapped.

    The same formula in one kernel instead of seven elementwise ops (each a pass over the MLP's widest
    activation): 4-6% of a CPU step. Only the module is swapped, not ``config.activation_function``, so the
    saved model is unchanged; outputs differ from ``gelu_new`` by rounding (< 5e-7 in fp32).
    """
    from transformers.activations import ACT2FN, NewGELUActivation

    slots = [
        (module, name)
        for module in model.modules()
        for name, child in module.named_children()
        if type(child) is NewGELUActivation
    ]
    for module, name in slots:
        setattr(module, name, ACT2FN["gelu_pytorch_tanh"])
    return len(slots)


def _base_label(config: TrainConfig) -> str:
    if config.base == "scratch":
        return f"scratch-{config.scratch_size}"
    return Path(config.base.rstrip("/")).name


def default_name(config: TrainConfig) -> str:
    """``<data file stem>-<base>``, the stem of the stored model's name when no --name is given."""
    return f"{Path(config.data.path).stem}-{_base_label(config)}"


def _accelerator(
    config: TrainConfig, model: Any = None, checkpoint: Checkpoint | None = None
) -> tuple[Accelerator, PrecisionChoice, bool]:
    """An accelerator in the precision :func:`~gpt2tui.core.device.choose_precision` picks for ``model``,
    compiling the model as it prepares it when ``--compile`` resolves to on (the third value)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import TorchDynamoPlugin

    from gpt2tui.core.device import choose_precision, compile_enabled, cxx_compiler, use_tf32

    # A resumed run keeps the precision it began with: a probe could answer differently now, and the resumed
    # weights would no longer be the ones an uninterrupted run ends with.
    choice = _recorded_precision(checkpoint) if config.mixed_precision == "auto" else None
    if choice is None:
        width = getattr(getattr(model, "config", None), "hidden_size", None)
        choice = choose_precision(config.mixed_precision, width)
    cuda = torch.cuda.is_available()
    if choice.precision == "fp16" and not cuda:
        raise UserError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on a CPU.")
    compiled = compile_enabled(config.compile, cuda)
    if compiled and not cuda and cxx_compiler() is None:
        raise UserError(
            "--compile on needs a C++ compiler on a CPU (g++ or clang++); install one or use off."
        )
    use_tf32(config.tf32)
    # Accelerate keeps process-wide state; a second run in the same process (the TUI) must start clean.
    AcceleratorState._reset_state(reset_partial_state=False)
    # accelerate compiles last in prepare (after DDP and the autocast wrapper); an explicit backend, so an
    # ACCELERATE_DYNAMO_BACKEND in the environment does not decide it behind --compile's back.
    dynamo = TorchDynamoPlugin(backend="inductor" if compiled else "no")
    return Accelerator(mixed_precision=choice.precision, dynamo_plugin=dynamo), choice, compiled


def _recorded_precision(checkpoint: Checkpoint | None) -> PrecisionChoice | None:
    """The precision a checkpoint's run chose (None for a fresh start or an older checkpoint)."""
    from gpt2tui.core.device import PrecisionChoice

    if checkpoint is None:
        return None
    try:
        saved = json.loads((checkpoint.path / STATE_FILE).read_text(encoding="utf-8"))["precision"]
        return PrecisionChoice(str(saved["precision"]), str(saved["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and layer norms (as in nanoGPT and run_clm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "ln_" in name or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------------- loop


@dataclass
class LoopState:
    """The loop's counters: saved in every checkpoint so a resumed run continues them exactly."""

    step: int = 0
    trained_tokens: int = 0
    train_seconds: float = 0.0
    window: float = 0.0  # summed micro-batch losses since the last StepLogged
    window_n: int = 0
    loss_before: float | None = None
    evals: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_loss: float | None = None

    def note_eval(self, step: int, loss: float) -> bool:
        """Record a held-out loss; True when it is the best so far."""
        self.evals.append((step, loss))
        if self.best_loss is None or loss < self.best_loss:
            self.best_step, self.best_loss = step, loss
            return True
        return False


class Loop:
    """The training loop and the finish; one object so the step, the checkpoint and the log share state."""

    def __init__(self, job: Job, emit: EventCallback, stop: threading.Event) -> None:
        self.job = job
        self.emit = emit
        self.stop = stop
        self.state = LoopState()
        self.started = time.perf_counter()
        self._perm: tuple[int, Any] | None = None  # (epoch, permutation) of the current epoch
        self._best_in_memory: dict[str, Any] = {}  # --keep-best without a run folder
        self.wall_before = 0.0  # wall-clock seconds of the run before this process resumed it
        # This window's micro-batch losses, still on the device: read (one host sync) only where the loop
        # needs them (a log line, an eval, a checkpoint, the end), so a GPU never waits for the host per step.
        self._pending: list[Any] = []
        self._pending_from = 0  # the step index of the first pending loss
        self.peak_flops: float | None = None  # the device's matmul peak, measured at the start (GPU)
        self.per_token = 0.0  # training FLOPs per token

    # -------------------------------------------------------------------------------------------- the loop

    def run(self) -> RunFinished:
        job, config = self.job, self.job.config
        if job.checkpoint is not None:
            self.load_checkpoint(job.checkpoint)
        state = self.state
        accelerator = job.accelerator
        # Ctrl+C while the file was packed: no evaluation of every block first (a big file's took a minute,
        # with Ctrl+C seemingly ignored).
        if _agreed(accelerator, self.stop.is_set()):
            raise UserError(STOPPED_BEFORE_START)
        self.measure_device()
        self.emit(self.started_event())
        if state.loss_before is None:
            state.loss_before = self.evaluate(0)
        halt = _agreed(accelerator, self.stop.is_set())
        job.model.train()
        lap = time.perf_counter()
        while state.step < job.total_steps and not halt:
            self.optimizer_step()
            state.step += 1
            if state.step % config.log_every == 0 or state.step == job.total_steps:
                state.train_seconds += time.perf_counter() - lap
                lap = time.perf_counter()
                self.log_step()
            if config.eval_every and state.step % config.eval_every == 0 and state.step < job.total_steps:
                state.train_seconds += time.perf_counter() - lap
                self.evaluate(state.step)
                lap = time.perf_counter()
            halt = _agreed(accelerator, self.stop.is_set())
            if (
                config.save_every
                and state.step % config.save_every == 0
                and state.step < job.total_steps
                and not halt
            ):
                state.train_seconds += time.perf_counter() - lap
                self.save_checkpoint()
                lap = time.perf_counter()
        state.train_seconds += time.perf_counter() - lap
        self.settle_losses()
        if state.step == 0:
            raise UserError(STOPPED_BEFORE_START)
        stopped = state.step < job.total_steps
        if stopped:
            self.emit(RunStopping(step=state.step))
            self.save_checkpoint()
        return self.finish(stopped)

    def batch(self, micro: int) -> Any:
        """The rows of global micro-batch ``micro`` for this process: O(1) to reach any point of the run."""
        import numpy as np
        import torch

        job = self.job
        epoch, position = divmod(micro, job.batches_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            generator = torch.Generator().manual_seed(job.config.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(job.train_index), generator=generator))
        perm = self._perm[1]
        size, rank = job.config.batch_size, job.accelerator.process_index
        start = position * job.global_batch + rank * size
        # The epoch's last batch wraps to its first rows, so every process always gets a full batch.
        rows = perm[torch.arange(start, start + size) % len(perm)].numpy()
        # Fancy indexing a memory map reads just these rows; int64 is what the embedding takes.
        batch = torch.from_numpy(np.asarray(job.blocks[job.train_index[rows]], dtype=np.int64))
        device = job.accelerator.device
        if device.type == "cuda" and job.config.pin_memory:
            # From page-locked memory the copy is a DMA that does not block the host: the next step's Python
            # runs while it lands (torch's pinned allocator keeps the buffer until the copy is done).
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device)

    def optimizer_step(self) -> None:
        job, state = self.job, self.state
        accelerator, config = job.accelerator, job.config
        first = state.step * config.grad_accum
        if not self._pending:
            self._pending_from = state.step
        for i in range(config.grad_accum):
            batch = self.batch(first + i)
            last = i == config.grad_accum - 1
            with accelerator.no_sync(job.model) if not last else contextlib.nullcontext():
                loss = job.model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss / config.grad_accum)
            self._pending.append(loss.detach())
            state.trained_tokens += batch.numel() * accelerator.num_processes
        accelerator.clip_grad_norm_(job.model.parameters(), config.max_grad_norm)
        job.optimizer.step()
        job.scheduler.step()
        job.optimizer.zero_grad(set_to_none=True)

    def settle_losses(self) -> None:
        """Move the losses still on the device into the window (one host sync for all of them); stop the run
        at the first step whose loss is not finite, on every process alike."""
        if not self._pending:
            return
        import torch

        job, state = self.job, self.state
        values = torch.stack(self._pending).float().cpu().tolist()
        self._pending.clear()
        bad = next((i for i, value in enumerate(values) if not math.isfinite(value)), None)
        # Every process must take the same decision, or the others wait forever in the next all-reduce.
        if _agreed(job.accelerator, bad is not None):
            step = self._pending_from + (bad if bad is not None else 0) // job.config.grad_accum + 1
            value = values[bad] if bad is not None else float("nan")
            raise UserError(
                f"Training stopped at step {step}: the loss became "
                f"{value if not math.isnan(value) else 'nan'}; lower the learning rate (--lr, now {job.lr:g})."
            )
        state.window += sum(values)
        state.window_n += len(values)

    def log_step(self) -> None:
        from gpt2tui.core.flops import mfu, peak_memory_bytes

        self.settle_losses()
        job, state = self.job, self.state
        elapsed = state.train_seconds
        rate = state.trained_tokens / max(elapsed, 1e-9)
        self.emit(
            StepLogged(
                step=state.step,
                total_steps=job.total_steps,
                epoch=state.step / job.steps_per_epoch,
                loss=state.window / max(state.window_n, 1),
                learning_rate=job.scheduler.get_last_lr()[0],
                tokens_per_second=rate,
                elapsed_seconds=elapsed,
                eta_seconds=elapsed / state.step * (job.total_steps - state.step),
                mfu=mfu(rate, self.per_token, self.peak_flops, job.accelerator.num_processes),
                peak_memory_bytes=peak_memory_bytes(job.accelerator.device),
            )
        )
        state.window, state.window_n = 0.0, 0

    def evaluate(self, step: int) -> float:
        from gpt2tui.core.evaluation import loss_over
        from gpt2tui.core.events import EVAL_PROGRESS_SECONDS, EvalProgress

        self.settle_losses()  # a diverged run stops here, not after an evaluation of broken weights
        job = self.job
        processes = job.accelerator.num_processes
        last = time.perf_counter()

        def progress(done: int, total: int) -> None:
            """A few ``EvalProgress`` a second at most, none for an evaluation shorter than the interval."""
            nonlocal last
            now = time.perf_counter()
            if total > 0 and done < total and now - last >= EVAL_PROGRESS_SECONDS:
                last = now
                # Each process counts the blocks of its own shard; they move in step (losses are gathered
                # per batch), and only the main process's events are kept.
                self.emit(
                    EvalProgress(step=step, blocks_done=min(total, done * processes), blocks_total=total)
                )

        loss = loss_over(job.eager_model, job.eval_loader, job.accelerator, on_progress=progress)
        best = self.state.note_eval(step, loss)
        if best and job.config.keep_best and step > 0:
            self.save_best_weights(step)
        sample = None
        if job.config.sample_prompt and job.accelerator.is_main_process:
            sample = _sample(job.plain_model, job.base, job.config, job.data)
        self.emit(
            EvalFinished(
                step=step,
                loss=loss,
                perplexity=perplexity_from_loss(loss),
                sample=sample,
                best_step=self.state.best_step,
                best_loss=self.state.best_loss,
            )
        )
        return loss

    def measure_device(self) -> None:
        """FLOPs per token, and on a GPU the matmul peak MFU is read against (core/flops.py)."""
        from gpt2tui.core.flops import device_peak, flops_per_token

        job = self.job
        model = job.plain_model
        self.per_token = flops_per_token(model.config, job.block_size, count_parameters(model))
        self.peak_flops = device_peak(job.accelerator.device, job.accelerator.mixed_precision)

    def started_event(self) -> RunStarted:
        job = self.job
        return RunStarted(
            name=job.name,
            base=job.config.base,
            device=str(job.accelerator.device),
            mixed_precision=job.accelerator.mixed_precision,
            total_steps=job.total_steps,
            train_blocks=len(job.train_index),
            eval_blocks=job.eval_blocks,
            block_size=job.block_size,
            tokens_per_step=job.global_batch * job.config.grad_accum * job.block_size,
            parameters=count_parameters(job.model),
            resumed_from=job.checkpoint.step if job.checkpoint else 0,
            step_limit=job.config.step_limit,
            processes=job.accelerator.num_processes,
            threads=_torch_threads(),
            tokens_cached=job.data.cached,
            pack_seconds=round(job.data.seconds, 3),
            precision_reason=job.precision.reason,
            compiled=job.compiled,
            flops_per_token=self.per_token,
            peak_flops=self.peak_flops,
        )

    # ------------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> None:
        """Weights, optimizer, scheduler, RNG states and counters, after everything of this step is done."""
        self.settle_losses()  # the window's losses belong in the checkpoint (exact resume)
        job = self.job
        # Every process takes part (only the main one has the run folder under ``accelerate launch -m
        # gpt2tui train``): the others wait for the write, and a failure ends the run on all of them.
        job.accelerator.wait_for_everyone()
        failure: UserError | None = None
        if job.accelerator.is_main_process and job.run is not None:
            from gpt2tui.core.checkpoints import save_checkpoint

            try:
                saved = save_checkpoint(
                    job.run.checkpoints_dir,
                    self.state.step,
                    self.write_checkpoint,
                    job.config.keep_checkpoints,
                )
            except UserError as err:
                failure = err
            else:
                self.prune_best()
                self.emit(CheckpointSaved(step=saved.step, path=str(saved.path)))
        if _agreed(job.accelerator, failure is not None):
            raise failure or UserError("The main process could not write a checkpoint; its run.log says why.")

    def write_checkpoint(self, folder: Path) -> None:
        import numpy as np
        import torch

        job = self.job
        job.plain_model.save_pretrained(folder, safe_serialization=True)
        job.base.tokenizer.save_pretrained(folder)
        torch.save(
            {
                "optimizer": job.optimizer.state_dict(),
                "scheduler": job.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            folder / OPTIMIZER_FILE,
        )
        numpy_state = np.random.get_state()
        state = {
            "loop": asdict(self.state),
            "python_rng": _jsonable(random.getstate()),
            "numpy_rng": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "name": job.name,
            "total_steps": job.total_steps,
            "processes": job.accelerator.num_processes,
            "precision": asdict(job.precision),
            "wall_seconds": self.wall_before + time.perf_counter() - self.started,
        }
        (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Restore what :meth:`write_checkpoint` wrote (the weights were loaded with the base)."""
        import numpy as np
        import torch

        job = self.job
        saved = json.loads((checkpoint.path / STATE_FILE).read_text(encoding="utf-8"))
        processes = saved.get("processes", 1)
        if processes != job.accelerator.num_processes or saved.get("total_steps") != job.total_steps:
            raise UserError(
                f"The checkpoint at step {checkpoint.step} was written by {processes} process(es) planning "
                f"{saved.get('total_steps')} steps; resume it with {processes} process(es) and the same settings."
            )
        self.wall_before = float(saved.get("wall_seconds", 0.0))
        loop = saved["loop"]
        loop["evals"] = [tuple(pair) for pair in loop["evals"]]
        self.state = LoopState(**loop)
        # weights_only: a checkpoint is data, never code.
        tensors = torch.load(checkpoint.path / OPTIMIZER_FILE, weights_only=True, map_location="cpu")
        job.optimizer.load_state_dict(tensors["optimizer"])
        job.scheduler.load_state_dict(tensors["scheduler"])
        torch.set_rng_state(tensors["torch_rng"])
        if tensors["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
        random.setstate(_tupled(saved["python_rng"]))
        kind, keys, *rest = saved["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))

    def best_path(self, step: int) -> Path:
        assert self.job.run is not None
        return self.job.run.best_dir / f"step-{step}.safetensors"

    def save_best_weights(self, step: int) -> None:
        """The weights of a new best evaluation, for --keep-best (one file per step, written atomically)."""
        job = self.job
        if job.run is None:
            self._best_in_memory = {k: v.detach().clone() for k, v in job.plain_model.state_dict().items()}
            return
        if not job.accelerator.is_main_process:
            return
        from safetensors.torch import save_model

        job.run.best_dir.mkdir(parents=True, exist_ok=True)
        path = self.best_path(step)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_model(job.plain_model, str(tmp))
        os.replace(tmp, path)

    def prune_best(self) -> None:
        """Keep only the best-weights files that the current state or a kept checkpoint still names."""
        from gpt2tui.core.checkpoints import complete_checkpoints

        job = self.job
        if job.run is None or not job.run.best_dir.is_dir():
            return
        wanted = {self.state.best_step}
        for checkpoint in complete_checkpoints(job.run.checkpoints_dir):
            try:
                wanted.add(json.loads((checkpoint.path / STATE_FILE).read_text())["loop"]["best_step"])
            except (OSError, ValueError, KeyError):
                continue
        for path in job.run.best_dir.glob("step-*.safetensors"):
            if int(path.stem.split("-")[1]) not in wanted:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------ finish

    def finish(self, stopped: bool) -> RunFinished:
        job, state = self.job, self.state
        loss_after = self.evaluate(state.step)
        weights, weights_step, stored_loss = "last", state.step, loss_after
        if (
            job.config.keep_best
            and state.best_step is not None
            and state.best_step > 0
            and state.best_step != state.step
        ):
            weights, weights_step, stored_loss = "best", state.best_step, state.best_loss
        job.accelerator.wait_for_everyone()
        assert state.loss_before is not None and stored_loss is not None
        result = RunFinished(
            name=job.name,
            path=str(job.store.path_for(job.name)),
            steps=state.step,
            stopped=stopped,
            eval_loss_before=state.loss_before,
            eval_loss_after=stored_loss,
            perplexity_before=perplexity_from_loss(state.loss_before),
            perplexity_after=perplexity_from_loss(stored_loss),
            train_tokens=state.trained_tokens,
            tokens_per_second=state.trained_tokens / max(state.train_seconds, 1e-9),
            seconds=self.wall_before + time.perf_counter() - self.started,
            weights=weights,
            weights_step=weights_step,
            best_step=state.best_step,
            best_eval_loss=state.best_loss,
        )
        if job.accelerator.is_main_process:
            self.store_model(result)
        job.accelerator.wait_for_everyone()
        self.emit(result)
        return result

    def store_model(self, result: RunFinished) -> None:
        job = self.job
        unwrapped = job.plain_model
        if result.weights == "best":
            self.load_best_weights(unwrapped, result.weights_step or 0)
        generation_config = _generation_config(job.base)

        def write(folder: Path) -> None:
            from gpt2tui.core.chat_template import set_chat_template

            unwrapped.generation_config = generation_config
            unwrapped.save_pretrained(folder, safe_serialization=True)
            # Q/A and prompt/completion models get the chat template of their rows, in tokenizer_config.json.
            set_chat_template(
                job.base.tokenizer, job.data.formatting.kind, job.data.formatting.prompt_template
            )
            job.base.tokenizer.save_pretrained(folder, save_jinja_files=False)

        metadata = build_metadata(job, result, str(job.accelerator.device), job.accelerator.mixed_precision)
        job.store.save(job.name, write, metadata, run=job.run.id if job.run is not None else None)

    def load_best_weights(self, model: Any, step: int) -> None:
        if self.job.run is None:
            model.load_state_dict(self._best_in_memory)
            return
        from safetensors.torch import load_model

        load_model(model, str(self.best_path(step)))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _agreed(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process if it is true on any (free with one process)."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def _sample(model: Any, base: ResolvedBase, config: TrainConfig, data: Packed) -> str:
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


def build_metadata(job: Job, result: RunFinished, device: str, mixed_precision: str) -> ModelMetadata:
    """Machine-readable record of the run, stored as ``gpt2tui.json`` beside the weights."""
    config, data = job.config, job.data
    return ModelMetadata(
        name=result.name,
        gpt2tui_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        run=job.run.id if job.run is not None else None,
        base=config.base,
        base_kind=job.base.kind,
        scratch_size=job.base.scratch_size,
        dataset=DatasetRecord(
            path=str(Path(config.data.path).expanduser().resolve()),
            format=data.format,
            sha256=data.sha256,
            rows=data.rows,
            tokens=job.tokens,
            train_blocks=len(job.train_index),
            eval_blocks=job.eval_blocks,
            encoding=config.data.encoding,
        ),
        formatting=FormattingRecord(
            kind=data.formatting.kind,
            columns=tuple(data.formatting.columns),
            prompt_template=data.formatting.prompt_template,
            stop_text=data.formatting.stop_text,
        ),
        hyperparameters={
            "block_size": job.block_size,
            "batch_size": config.batch_size,
            "grad_accum": config.grad_accum,
            "processes": job.accelerator.num_processes,
            "lr": job.lr,
            "weight_decay": config.weight_decay,
            "warmup_ratio": config.warmup_ratio,
            "max_grad_norm": config.max_grad_norm,
            "epochs": config.epochs if config.step_limit == "epochs" else None,
            "max_steps": config.max_steps,
            "planned_steps": job.total_steps,
            "eval_split": config.eval_split,
            "seed": config.seed,
            "mixed_precision": mixed_precision,
            "dropout": config.dropout,
        },
        block_size=job.block_size,
        device=device,
        step_limit=config.step_limit,
        steps=result.steps,
        stopped=result.stopped,
        weights=result.weights,
        weights_step=result.weights_step,
        best_step=result.best_step,
        best_eval_loss=result.best_eval_loss,
        eval_loss_before=result.eval_loss_before,
        eval_loss_after=result.eval_loss_after,
        perplexity_before=result.perplexity_before,
        perplexity_after=result.perplexity_after,
        train_tokens=result.train_tokens,
        tokens_per_second=result.tokens_per_second,
        seconds=result.seconds,
    )


# ------------------------------------------------------------------------------------------------ preview


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
    source = Source(spec)
    info = resolve_tokenizer(
        base, scratch_size, lambda shape: scratch_tokenizer(source, shape.vocab_size, shape.n_positions)
    )
    size = block_size or info.default_block_size
    check_block_size(size, info.context_length)
    return summarize(pack(source, info.tokenizer), info.tokenizer, size, eval_split, seed)
