"""The training configuration: one dataclass, a comment per field, validation before any work.

The CLI reads its defaults from here, the TUI's setup screen builds one, and a run stores it as JSON in its
``config.json`` so a resumed (or re-read) run is the same run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gpt2tui.core.data import DataSpec, check_eval_split
from gpt2tui.core.errors import UserError

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
COMPILE = ("auto", "on", "off")
MAX_SEED = 2**32 - 1
"""accelerate's ``set_seed`` seeds numpy too, which takes 32-bit seeds."""


MAX_STEPS = 10_000_000
"""The most optimizer steps a run may have (nanoGPT trains GPT-2 124M from scratch in 600,000): more is a typo,
and its warm-up alone (:attr:`TrainConfig.warmup_ratio` of the steps) would keep the learning rate near 0 for
the whole of any run that ends in this lifetime."""


def check_total_steps(steps: int, epochs: float) -> None:
    """Refuse a run that ``--epochs`` makes longer than :data:`MAX_STEPS` on its data (known once packed)."""
    if steps > MAX_STEPS:
        raise UserError(
            f"--epochs {epochs:g} makes {steps:,} optimizer steps on this data, more than the {MAX_STEPS:,} a run "
            "may have; use fewer epochs."
        )


@dataclass
class TrainConfig:
    """Everything that defines a run; defaults suit a small fine-tune."""

    data: DataSpec
    base: str = "gpt2"  # Hub id, local folder, stored model name, or "scratch"
    scratch_size: str = "tiny"  # scratch only: tiny | small | gpt2
    name: str | None = None  # stored model name; default <dataset>-<base>
    epochs: float = 3.0  # passes over the data; used only when max_steps is None
    max_steps: int | None = None  # optimizer steps; when set, it (not epochs) decides the length
    block_size: int | None = None  # tokens per training sequence; default from the base
    batch_size: int = 8  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # default 5e-5 for pretrained bases, higher for scratch
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05  # share of steps spent warming the learning rate up
    max_grad_norm: float = 1.0
    eval_split: float = 0.1  # share of blocks held out
    eval_every: int = 0  # optimizer steps between evals (0: only before and after)
    log_every: int = 10  # optimizer steps between StepLogged events
    seed: int = 42
    mixed_precision: str = "auto"  # auto (GPU: bf16/fp16; CPU: core/device.py) | no | bf16 | fp16
    sample_prompt: str | None = None  # generate from this at each eval, so progress can be read
    sample_tokens: int = 40
    save_every: int = 100  # optimizer steps between checkpoints (0: only when stopped); runs only
    keep_checkpoints: int = 2  # the newest K complete checkpoints are kept
    keep_best: bool = False  # store the weights of the best held-out evaluation, not the last step
    dropout: float | None = None  # override the base's dropout (e.g. 0.0); None keeps the base's
    threads: int | None = None  # CPU threads; None: the cores free when the run starts (core/device.py)
    data_cache: bool = True  # read/write packed tokens in the cache (core/packing.py); off: pack every run
    fused_adamw: bool = True  # torch's fused AdamW kernel (as HF Trainer uses); off: the per-tensor loop
    fast_gelu: bool = True  # GPT-2's gelu_new as torch's one-kernel tanh GELU (same function, other rounding)
    compile: str = (
        "auto"  # torch.compile the model: auto (on with CUDA, off on a CPU: core/device.py) | on | off
    )
    tf32: bool = True  # CUDA only: fp32 matmuls on TF32 tensor cores (bf16/fp16 autocast is unaffected)
    pin_memory: bool = True  # CUDA only: batches leave page-locked host memory without blocking the step

    @property
    def step_limit(self) -> str:
        """Which setting decides the run's length: exactly one of "epochs" and "max_steps"."""
        return "max_steps" if self.max_steps is not None else "epochs"

    def validate(self) -> None:
        """Refuse bad numbers before any file is read or model is loaded."""
        from gpt2tui.core.models import check_scratch_size

        positive = {
            "--batch-size": self.batch_size,
            "--grad-accum": self.grad_accum,
            "--log-every": self.log_every,
            "--keep-checkpoints": self.keep_checkpoints,
            "--threads": self.threads if self.threads is not None else 1,
        }
        for option, value in positive.items():
            if value < 1:
                raise UserError(f"{option} must be at least 1, not {value}.")
        if self.max_steps is not None and not 1 <= self.max_steps <= MAX_STEPS:
            raise UserError(f"--max-steps must be from 1 to {MAX_STEPS:,}, not {self.max_steps:,}.")
        if self.max_steps is None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise UserError(f"--epochs must be a number greater than 0, not {self.epochs}.")
        if self.block_size is not None and self.block_size < 2:
            raise UserError(f"--block-size must be at least 2, not {self.block_size}.")
        if self.lr is not None and not (0 < self.lr < 1):
            raise UserError(f"--lr must be between 0 and 1, not {self.lr}.")
        for option, value in (("--eval-every", self.eval_every), ("--save-every", self.save_every)):
            if value < 0:
                raise UserError(f"{option} must be 0 or more, not {value}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}.")
        if self.compile not in COMPILE:
            raise UserError(f"--compile must be one of {', '.join(COMPILE)}, not {self.compile}.")
        check_eval_split(self.eval_split)
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed must be a whole number from 0 to {MAX_SEED}, not {self.seed}.")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be at least 0 and below 1, not {self.dropout}.")
        if self.base == "scratch":
            check_scratch_size(self.scratch_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys (from a newer version) are ignored."""
        spec_names = {f.name for f in dataclasses.fields(DataSpec)}
        spec = DataSpec(**{k: v for k, v in dict(data["data"]).items() if k in spec_names})
        names = {f.name for f in dataclasses.fields(cls)} - {"data"}
        return cls(data=spec, **{k: v for k, v in data.items() if k in names})
