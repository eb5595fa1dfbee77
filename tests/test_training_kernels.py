"""The CPU speed-ups of the training loop: each on by default, each with its off switch, each run on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gpt2tui.core import device
from gpt2tui.core.config import TrainConfig
from gpt2tui.core.data import DataSpec
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import prepare, train, use_fast_gelu
from tests.conftest import QA_CSV, cli


def tiny(**changes) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 4, "log_every": 2, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


def test_fast_gelu_is_the_same_function_and_the_saved_model_keeps_gelu_new(home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
    from transformers.activations import GELUTanh, NewGELUActivation

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=64, n_positions=32)).eval()
    ids = torch.randint(0, 64, (2, 16))
    before = model(input_ids=ids).logits
    assert use_fast_gelu(model) == 2
    assert all(type(block.mlp.act) is GELUTanh for block in model.transformer.h)
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)
    assert use_fast_gelu(model) == 0  # nothing left to swap
    model.save_pretrained(home / "saved")
    assert json.loads((home / "saved" / "config.json").read_text())["activation_function"] == "gelu_new"
    again = AutoModelForCausalLM.from_pretrained(home / "saved")
    assert type(again.transformer.h[0].mlp.act) is NewGELUActivation


@pytest.mark.parametrize(("fused", "fast"), [(True, True), (False, False)])
def test_each_kernel_follows_its_switch(home: Path, fused: bool, fast: bool) -> None:
    from transformers.activations import GELUTanh, NewGELUActivation

    job = prepare(tiny(fused_adamw=fused, fast_gelu=fast), ModelStore(), None, False)
    assert bool(job.optimizer.optimizer.defaults["fused"]) is fused
    expected = GELUTanh if fast else NewGELUActivation
    assert all(type(block.mlp.act) is expected for block in job.model.transformer.h)


def test_the_switches_are_cli_options_that_run_on_cpu(home: Path) -> None:
    run = cli(
        "train", str(QA_CSV), "--base", "scratch", "--max-steps", "2", "--no-fused-adamw", "--no-fast-gelu"
    )
    assert run.returncode == 0, run.stderr
    config = json.loads(next((home / "runs").glob("*/config.json")).read_text())["train"]
    assert (config["fused_adamw"], config["fast_gelu"]) == (False, False)


def test_defaults_train_and_improve(home: Path) -> None:
    result = train(tiny(max_steps=20))
    assert result.perplexity_after < result.perplexity_before


def test_freed_memory_is_kept_for_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt: Linux only")
    assert device.keep_freed_memory() is True
    monkeypatch.setenv(device.MALLOC_ENV, "default")  # the off switch leaves the allocator alone
    assert device.keep_freed_memory() is False
