"""Training FLOPs, MFU and peak memory (core/flops.py): hand-computed figures, the events a CPU run writes, and
the GPU path where CUDA exists (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2tui.core import flops
from gpt2tui.core.config import TrainConfig
from gpt2tui.core.data import DataSpec
from gpt2tui.core.events import RunStarted, StepLogged, describe
from gpt2tui.core.training import train

QA_CSV = Path(__file__).resolve().parent.parent / "sample_data" / "qa.csv"


def test_flops_per_token_is_six_n_without_positions_plus_attention() -> None:
    from transformers import GPT2Config

    config = GPT2Config(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257)
    parameters = 124_439_808  # GPT-2 124M, tied embeddings counted once
    expected = 6 * (parameters - 1024 * 768) + 12 * 12 * 768 * 1024
    assert flops.flops_per_token(config, 1024, parameters) == expected
    assert expected == 855_166_464  # about 0.86 GFLOP a token: 6 x 123.65 M plus attention


def test_mfu_is_achieved_over_the_peak_of_every_device() -> None:
    assert flops.mfu(100_000, 1e9, 400e12) == pytest.approx(0.25)
    assert flops.mfu(200_000, 1e9, 400e12, processes=2) == pytest.approx(0.25)
    assert flops.mfu(100_000, 1e9, None) is None


def test_a_cpu_matmul_probe_measures_a_positive_rate_and_gpu_figures_are_none_on_a_cpu() -> None:
    import torch

    assert flops.matmul_peak("cpu", torch.float32, size=128, repeats=1) > 0
    assert flops.device_peak("cpu", "no") is None and flops.peak_memory_bytes("cpu") is None
    assert flops.matmul_dtype("bf16") is torch.bfloat16 and flops.matmul_dtype("no") is torch.float32


def config(**changes: object) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 4, "log_every": 2, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


def test_a_cpu_run_records_flops_per_token_and_no_gpu_figures(home: Path) -> None:
    events: list = []
    train(config(), on_event=events.append)
    started = next(e for e in events if isinstance(e, RunStarted))
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert started.peak_flops is None and started.flops_per_token > 0
    assert steps and all(s.mfu is None and s.peak_memory_bytes is None for s in steps)
    assert "MFU" not in describe(steps[-1]) and " tok/s | ETA " in describe(steps[-1])


def test_with_a_measured_peak_each_step_reports_its_mfu(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flops, "device_peak", lambda device, precision: 2e9)  # a pretend 2 GFLOP/s device
    events: list = []
    train(config(), on_event=events.append)
    started = next(e for e in events if isinstance(e, RunStarted))
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert started.peak_flops == 2e9
    for step in steps:
        assert step.mfu == pytest.approx(step.tokens_per_second * started.flops_per_token / 2e9)
    assert f"| MFU {steps[-1].mfu:.1%} |" in describe(steps[-1])


def test_the_step_line_shows_mfu_and_peak_memory() -> None:
    event = StepLogged(3, 10, 0.3, 2.5, 1e-4, 1234.0, 1.0, 2.0, mfu=0.4732, peak_memory_bytes=21_400_000_000)
    assert describe(event) == (
        "step 3/10 | epoch 0.30 | loss 2.5000 | lr 1.00e-04 | 1,234 tok/s | MFU 47.3% | peak 21.4 GB | "
        "ETA 0:00:02"
    )


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_a_gpu_run_reports_mfu_and_peak_memory(home: Path) -> None:
    events: list = []
    train(config(max_steps=6), on_event=events.append)
    started = next(e for e in events if isinstance(e, RunStarted))
    step = [e for e in events if isinstance(e, StepLogged)][-1]
    assert started.peak_flops and started.peak_flops > 1e12
    assert step.mfu is not None and 0 < step.mfu < 1
    assert step.peak_memory_bytes and step.peak_memory_bytes > 0
