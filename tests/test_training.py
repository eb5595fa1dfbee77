"""Fine-tuning end to end on tiny models: events, stored layout, reproducibility, stopping, failures."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.events import EvalFinished, RunFailed, RunFinished, RunStarted, StepLogged
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import TrainConfig, preview, train
from tests.conftest import KJV_TXT, QA_CSV, tree_snapshot


def tiny(**changes) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 12, "log_every": 4, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


def test_scratch_run_improves_and_stores_a_standard_model(home: Path) -> None:
    events: list = []
    result = train(tiny(max_steps=40, eval_every=20, sample_prompt="What is Mars?"), on_event=events.append)
    assert result.perplexity_after < result.perplexity_before * 0.5
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert [e.step for e in events if isinstance(e, EvalFinished)] == [0, 20, 40]
    assert [e.step for e in events if isinstance(e, StepLogged)] == list(range(4, 41, 4))
    assert all(isinstance(e.sample, str) for e in events if isinstance(e, EvalFinished))

    folder = Path(result.path)
    assert folder == home / "models" / "qa-scratch-tiny"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "README.md",
        "gpt2tui.json",
    ):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin"))
    meta = json.loads((folder / "gpt2tui.json").read_text())
    assert meta["base"] == "scratch" and meta["dataset"]["sha256"] and meta["hyperparameters"]["seed"] == 42
    assert meta["formatting"]["prompt_template"] == "Question: {prompt}\nAnswer:"
    assert meta["perplexity_after"] == result.perplexity_after and meta["steps"] == 40
    card = (folder / "README.md").read_text()
    assert "| before |" in card and "sha256" in card

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size >= len(tokenizer)


def test_same_seed_same_run() -> None:
    a = train(tiny(name="a"))
    b = train(tiny(name="b"))
    assert a.eval_loss_after == b.eval_loss_after
    c = train(tiny(name="c", seed=7))
    assert c.eval_loss_after != a.eval_loss_after


def test_stop_event_ends_the_run_and_still_saves(home: Path) -> None:
    stop = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, StepLogged) and event.step >= 4:
            stop.set()

    result = train(tiny(max_steps=1000, name="stopped"), on_event=on_event, stop=stop)
    assert result.stopped and result.steps == 4
    meta = ModelStore().get("stopped").metadata
    assert meta.stopped is True and meta.hyperparameters["planned_steps"] == 1000

    from gpt2tui.core.generation import GenerationSettings, complete, load

    loaded = load("stopped")
    complete(loaded.model, loaded.tokenizer, "Hi", GenerationSettings(strategy="greedy", max_new_tokens=5))


def test_existing_name_fails_before_training(home: Path) -> None:
    train(tiny(name="taken"))
    before = tree_snapshot(home / "models")
    events: list = []
    with pytest.raises(UserError) as info:
        train(tiny(name="taken"), on_event=events.append)
    assert str(info.value).startswith("A model named 'taken' already exists;")
    assert events == [RunFailed(str(info.value))]
    assert tree_snapshot(home / "models") == before


def test_block_size_above_the_context_is_refused(home: Path) -> None:
    with pytest.raises(UserError) as info:
        train(tiny(block_size=4096))
    assert str(info.value) == "--block-size 4096 is larger than the model's context length (256 tokens)."
    assert tree_snapshot(home / "models") == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1, not 0."),
        ({"max_steps": 0}, "--max-steps must be from 1 to 10,000,000, not 0."),
        ({"max_steps": 99_999_999_999}, "--max-steps must be from 1 to 10,000,000, not 99,999,999,999."),
        ({"max_steps": None, "epochs": 0}, "--epochs must be a number greater than 0, not 0."),
        ({"lr": 5.0}, "--lr must be between 0 and 1, not 5.0."),
        ({"scratch_size": "huge"}, "Unknown scratch size 'huge'; choose one of tiny, small, gpt2."),
        ({"mixed_precision": "fp8"}, "--mixed-precision must be one of auto, no, bf16, fp16."),
        ({"eval_split": 1.5}, "--eval-split must be between 0 and 1 (exclusive), not 1.5."),
        ({"block_size": 0}, "--block-size must be at least 2, not 0."),
        ({"max_steps": None, "epochs": float("inf")}, "--epochs must be a number greater than 0, not inf."),
    ],
)
def test_bad_settings_are_refused_before_any_work(home: Path, changes: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        train(tiny(**changes))
    assert str(info.value) == message
    assert not home.exists()


def test_epochs_that_make_too_many_steps_are_refused_before_training(home: Path) -> None:
    """Known only once the data is packed: the file's blocks times the epochs, over the batch."""
    with pytest.raises(UserError) as info:
        train(tiny(max_steps=None, epochs=1e9, batch_size=1))
    assert re.fullmatch(
        r"--epochs 1e\+09 makes [\d,]+ optimizer steps on this data, more than the 10,000,000 a run may have; "
        r"use fewer epochs\.",
        str(info.value),
    )
    assert tree_snapshot(home / "models") == {}


def test_non_finite_loss_stops_with_a_clear_message(home: Path, tmp_path: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2tui.core.models import train_tokenizer

    tokenizer = train_tokenizer([QA_CSV.read_text()], 300, 64)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    )
    with torch.no_grad():
        model.transformer.wte.weight.fill_(float("nan"))
    folder = tmp_path / "nan-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    events: list = []
    with pytest.raises(UserError) as info:
        train(tiny(base=str(folder), block_size=32), on_event=events.append)
    assert (
        str(info.value)
        == "Training stopped at step 1: the loss became nan; lower the learning rate (--lr, now 5e-05)."
    )
    assert isinstance(events[-1], RunFailed)
    assert tree_snapshot(home / "models") == {}


def test_fine_tuning_a_local_folder_and_a_stored_model(tiny_model: str, home: Path) -> None:
    folder = home / "models" / tiny_model
    first = train(tiny(base=str(folder), name="from-folder", max_steps=3))
    assert json.loads((Path(first.path) / "gpt2tui.json").read_text())["base_kind"] == "local"
    second = train(tiny(base=tiny_model, name="from-store", max_steps=3))
    assert second.name == "from-store"


def test_preview_matches_training_and_reports_too_small_data(tmp_path: Path) -> None:
    summary = preview(DataSpec(str(KJV_TXT)), base="scratch", block_size=128)
    assert summary.rows == 50 and summary.blocks > 100 and summary.block_size == 128
    small = tmp_path / "small.txt"
    small.write_text("Just a few words here.\n")
    with pytest.raises(
        UserError,
        match=r"is not enough for one train and one eval block of 128 tokens; use --block-size \d+ or less\.$",
    ):
        preview(DataSpec(str(small)), base="scratch")


def test_unreachable_hub_fails_fast_with_the_offline_choices(home: Path) -> None:
    with pytest.raises(UserError) as info:  # how fast: bench/hub_offline.py
        train(tiny(base="gpt2"))
    assert str(info.value) == (
        "Could not download 'gpt2': the Hugging Face Hub cannot be reached and it is not in the local cache; "
        "offline, use a local save_pretrained folder (--base PATH) or train a new model (--base scratch)."
    )
    assert tree_snapshot(home / "models") == {}


def test_a_stop_before_the_first_step_saves_nothing(home: Path) -> None:
    stop = threading.Event()
    stop.set()
    events: list = []
    with pytest.raises(UserError) as info:
        train(tiny(name="never"), stop=stop, on_event=events.append)
    assert str(info.value) == "The run was stopped before its first training step; no model was saved."
    assert tree_snapshot(home / "models") == {}
    # Stopped while the file was packed: no evaluation of every block first (a big file's took a minute).
    assert [type(e) for e in events] == [RunFailed]


def test_a_half_precision_base_trains_in_fp32(home: Path, tmp_path: Path) -> None:
    """Weights saved in fp16 must not make training run in pure fp16 (which diverges)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2tui.core.models import train_tokenizer

    tokenizer = train_tokenizer([QA_CSV.read_text()], 300, 64)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    )
    folder = tmp_path / "fp16-model"
    model.half().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    result = train(tiny(base=str(folder), block_size=32, lr=1e-3, max_steps=8))
    assert result.perplexity_after < result.perplexity_before
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(result.path).dtype.is_floating_point


def test_samples_do_not_disturb_the_training_rng(home: Path) -> None:
    """A run with eval samples trains exactly like one without (eval mode, forked RNG)."""
    plain = train(tiny(name="plain", eval_every=4))
    sampled = train(tiny(name="sampled", eval_every=4, sample_prompt="What is Mars?"))
    assert sampled.eval_loss_after == plain.eval_loss_after


def test_bf16_autocast_trains_on_cpu(home: Path) -> None:
    events: list = []
    result = train(tiny(name="bf16", mixed_precision="bf16", max_steps=8), on_event=events.append)
    assert isinstance(events[0], RunStarted) and events[0].mixed_precision == "bf16"
    assert result.perplexity_after < result.perplexity_before
    meta = json.loads((Path(result.path) / "gpt2tui.json").read_text())
    assert meta["hyperparameters"]["mixed_precision"] == "bf16"


def test_fp16_without_cuda_is_refused(home: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: fp16 is allowed")
    with pytest.raises(UserError) as info:
        train(tiny(mixed_precision="fp16"))
    assert str(info.value) == "--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on a CPU."
    assert tree_snapshot(home / "models") == {}


def test_auto_precision_uses_a_gpu_when_there_is_one(home: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    events: list = []
    train(tiny(name="gpu", max_steps=4), on_event=events.append)
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert events[0].device.startswith("cuda") and events[0].mixed_precision == expected


def test_a_file_name_that_is_not_utf8_trains_and_is_stored(home: Path, tmp_path: Path) -> None:
    """Linux names are bytes: a Latin-1 name reaches Python with a lone surrogate, which UTF-8 cannot write.
    The model card (UTF-8 text) once failed the whole finished run at its save."""
    import shutil

    data = tmp_path / "q\udce9.csv"  # the bytes b"q\xe9.csv"
    shutil.copy(QA_CSV, data)
    result = train(TrainConfig(DataSpec(str(data)), base="scratch", max_steps=2, block_size=64, name="latin"))
    info = ModelStore().resolve("latin")
    assert str(info.path) == result.path
    assert "q\ufffd.csv" in (info.path / "README.md").read_text(encoding="utf-8")
    assert info.metadata.dataset.path == str(data)  # the exact name, for a later re-read
