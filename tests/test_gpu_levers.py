"""The GPU levers (torch.compile, TF32, SDPA attention, pinned-memory batches): each with its off switch, each
run on CPU; the CUDA-only paths are checked where a GPU is present and skipped cleanly elsewhere."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gpt2tui.core import device, launch
from gpt2tui.core.config import TrainConfig
from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.events import RunStarted, StepLogged, describe, device_label
from gpt2tui.core.runs import EVENTS_FILE, read_events
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import prepare, train
from tests.conftest import QA_CSV, cli


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")


def tiny(**changes) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 4, "log_every": 2, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ------------------------------------------------------------------------------------------------ compile


def test_compile_auto_is_on_only_with_cuda() -> None:
    assert device.compile_enabled("auto", cuda=True) is True
    assert device.compile_enabled("auto", cuda=False) is False
    assert device.compile_enabled("on", cuda=False) is True
    assert device.compile_enabled("off", cuda=True) is False
    with pytest.raises(UserError, match="--compile must be one of auto, on, off"):
        tiny(compile="yes").validate()


def test_compile_on_trains_checkpoints_resumes_exactly_and_stores_plain_keys(home: Path) -> None:
    """Real compiled runs on the CPU (inductor, so it needs a C++ compiler): evals, samples, checkpoints,
    keep-best, a stop and a resume; every weights file has the model's own keys, and the resumed run ends with
    the weights of the uninterrupted one.

    On one thread: with several, inductor's CPU kernels split their reductions between the threads in no
    fixed order, so even two uninterrupted compiled runs differ in the last bits (~1e-6 after 4 steps)."""
    import torch

    if device.cxx_compiler() is None:
        pytest.skip("inductor on a CPU needs a C++ compiler")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _compiled_runs(home)
    finally:
        torch.set_num_threads(threads)


def _compiled_runs(home: Path) -> None:
    common = {"compile": "on", "eval_every": 2, "save_every": 2, "keep_best": True, "sample_prompt": "Q:"}
    began = time.perf_counter()
    straight = launch.create(tiny(name="straight", **common))
    events: list = []
    train(launch.train_config(straight), on_event=events.append, run=straight)
    first = time.perf_counter() - began
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.compiled is True
    assert device_label(started).endswith(", compiled") and ", compiled, " in describe(started)

    # Stopped after step 2 (a checkpoint and the model are saved), then resumed to step 4.
    stopped = launch.create(tiny(name="resumed", **common))
    stop = threading.Event()

    def stop_at_2(event: object) -> None:
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    assert train(launch.train_config(stopped), on_event=stop_at_2, stop=stop, run=stopped).stopped
    result = train(launch.train_config(stopped), run=stopped, resume=True)
    assert (result.steps, result.stopped) == (4, False)
    print(
        f"\ncompiled CPU runs: the first (4 steps) {first:.1f} s, all three {time.perf_counter() - began:.1f} s"
    )

    files = [
        *(home / "models").glob("*/model.safetensors"),
        *(home / "runs").glob("*/checkpoints/*/model.safetensors"),
        *(home / "runs").glob("*/best/*.safetensors"),
    ]
    assert len(files) >= 4
    for path in files:
        keys = safetensors_keys(path)
        assert "transformer.h.0.attn.c_attn.weight" in keys, path
        assert not [key for key in keys if "_orig_mod" in key], path
    a, b = weights(home / "models" / "straight"), weights(home / "models" / "resumed")
    assert a.keys() == b.keys()
    assert all(bool((a[key] == b[key]).all()) for key in a)


def test_compile_auto_on_a_cpu_is_off_and_the_gpu_switches_run(home: Path) -> None:
    if cuda():
        pytest.skip("auto compiles on a CUDA machine")
    run = cli("train", str(QA_CSV), "--base", "scratch", "--max-steps", "2", "--no-tf32", "--no-pin-memory")
    assert run.returncode == 0, run.stderr
    folder = next((home / "runs").glob("*/config.json")).parent  # the run's, not the names' claims folder
    config = json.loads((folder / "config.json").read_text())["train"]
    assert (config["compile"], config["tf32"], config["pin_memory"]) == ("auto", False, False)
    started = next(e.event for e in read_events(folder / EVENTS_FILE)[0] if isinstance(e.event, RunStarted))
    assert started.compiled is False
    assert "compiled" not in run.stdout + run.stderr


def test_the_compile_options_parse() -> None:
    from gpt2tui.cli import _train_config, build_parser

    parse = build_parser().parse_args
    assert _train_config(parse(["train", "x.txt"])).compile == TrainConfig.compile == "auto"
    assert _train_config(parse(["train", "x.txt", "--compile", "on"])).compile == "on"
    assert _train_config(parse(["train", "x.txt", "--no-compile"])).compile == "off"
    config = _train_config(parse(["train", "x.txt"]))
    assert (config.tf32, config.pin_memory) == (True, True)
    config = _train_config(parse(["train", "x.txt", "--no-tf32", "--no-pin-memory"]))
    assert (config.tf32, config.pin_memory) == (False, False)


def test_an_older_run_started_event_reads_as_not_compiled() -> None:
    from gpt2tui.core.events import event_from_dict, event_to_dict

    started = RunStarted("m", "scratch", "cpu", "no", 4, 10, 2, 64, 512, 1000)
    old = {k: v for k, v in event_to_dict(started).items() if k != "compiled"}
    assert event_from_dict(old) == started
    assert not device_label(started).endswith("compiled")


@needs_cuda
def test_compile_auto_compiles_on_cuda(home: Path) -> None:
    job = prepare(tiny(), ModelStore(), None, False)
    assert job.compiled is True
    assert not any("_orig_mod" in key for key in job.plain_model.state_dict())


# --------------------------------------------------------------------------------------------------- TF32


def test_tf32_leaves_a_cpu_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_float32_matmul_precision()
    assert device.use_tf32(True) is False
    assert torch.get_float32_matmul_precision() == before


@needs_cuda
def test_tf32_follows_its_switch_on_cuda() -> None:
    import torch

    before = torch.get_float32_matmul_precision()
    try:
        assert device.use_tf32(True) is True
        assert torch.get_float32_matmul_precision() == "high"
        assert device.use_tf32(False) is False
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision(before)


# --------------------------------------------------------------------------------------------------- SDPA


def test_training_and_loaded_models_use_sdpa_attention(home: Path, tiny_model: str) -> None:
    from gpt2tui.core.models import load_local

    job = prepare(tiny(), ModelStore(), None, False)  # a scratch model, as trained
    assert job.plain_model.config._attn_implementation == "sdpa"
    model, _ = load_local(str(home / "models" / tiny_model))  # a stored model, as a base or for chat
    assert model.config._attn_implementation == "sdpa"
    # A runtime choice: nothing about it is written into the stored config.
    assert "attn_implementation" not in (home / "models" / tiny_model / "config.json").read_text()


# ------------------------------------------------------------------------------------------ pinned memory


@needs_cuda
def test_pinned_batches_match_the_plain_copy_on_cuda(home: Path) -> None:
    import dataclasses

    from gpt2tui.core.training import Loop

    job = prepare(tiny(compile="off"), ModelStore(), None, False)
    pinned = Loop(job, lambda event: None, threading.Event()).batch(3)
    job.config = dataclasses.replace(job.config, pin_memory=False)
    plain = Loop(job, lambda event: None, threading.Event()).batch(3)
    assert pinned.device.type == "cuda"
    assert bool((pinned == plain).all())
