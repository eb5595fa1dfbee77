"""``--mixed-precision auto`` on a CPU: bf16 only where it is native and pays, shown with its reason, resumed
as it began; a bf16 run stores fp32 weights that evaluate and generate as any other model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from gpt2tui.core import device, launch
from gpt2tui.core.config import TrainConfig
from gpt2tui.core.data import DataSpec
from gpt2tui.core.device import PrecisionChoice, cpu_precision, native_bf16
from gpt2tui.core.events import RunStarted, StepLogged, describe, device_label
from gpt2tui.core.training import train
from tests.conftest import QA_CSV

AVX2 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})
ZEN4 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}


def never_probed() -> float:
    raise AssertionError("the flags were clear: no probe should run")


def tiny(**changes) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 8, "log_every": 4, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


@pytest.mark.parametrize(
    ("flags", "capability", "onednn", "expected"),
    [
        (ZEN4, "AVX512", True, (True, "native AVX512_BF16")),
        (SAPPHIRE_RAPIDS, "AVX512", True, (True, "native AMX")),
        (AVX2, "AVX2", True, (False, "no native bf16, AVX2")),
        (ZEN4 - {"avx512_bf16"}, "AVX512", True, (False, "no native bf16, AVX512")),
        (ZEN4, "AVX2", True, (None, "AVX512_BF16 under torch AVX2")),  # e.g. ATEN_CPU_CAPABILITY=avx2
        (None, "DEFAULT", True, (None, "CPU flags unknown")),
        (frozenset({"fp", "asimd", "bf16"}), "DEFAULT", True, (None, "ARM bf16")),
        (ZEN4, "AVX512", False, (False, "torch has no oneDNN")),
    ],
)
def test_native_bf16_is_read_from_the_flags_and_torch(
    flags: frozenset[str] | None, capability: str, onednn: bool, expected: tuple[bool | None, str]
) -> None:
    assert native_bf16(flags, capability, onednn) == expected


def test_auto_picks_bf16_only_on_a_native_cpu_for_a_wide_model() -> None:
    assert cpu_precision(384, ZEN4, "AVX512", True, never_probed) == PrecisionChoice(
        "bf16", "native AVX512_BF16"
    )
    assert cpu_precision(None, SAPPHIRE_RAPIDS, "AVX512", True, never_probed).precision == "bf16"
    assert cpu_precision(384, AVX2, "AVX2", True, never_probed) == PrecisionChoice(
        "no", "no native bf16, AVX2"
    )
    narrow = cpu_precision(64, ZEN4, "AVX512", True, never_probed)
    assert narrow == PrecisionChoice("no", f"width 64 < {device.BF16_MIN_WIDTH}: bf16 would not pay")


def test_when_unsure_the_probe_decides_and_never_picks_a_slower_precision() -> None:
    fast = cpu_precision(768, None, "DEFAULT", True, lambda: 2.4)
    assert fast == PrecisionChoice("bf16", "CPU flags unknown; bf16 matmul probe 2.4x fp32")
    slow = cpu_precision(768, None, "DEFAULT", True, lambda: 0.2)  # emulated bf16: far slower
    assert slow == PrecisionChoice("no", "CPU flags unknown; bf16 matmul probe 0.2x fp32")
    marginal = cpu_precision(768, ZEN4, "AVX2", True, lambda: device.BF16_PROBE_GAIN - 0.1)
    assert marginal.precision == "no"
    several = cpu_precision(768, None, "DEFAULT", True, None)
    assert several == PrecisionChoice("no", "CPU flags unknown; not probed with several processes")


def test_the_probe_measures_a_real_matmul() -> None:
    gain = device.bf16_probe_gain(repeats=1)
    assert gain > 0


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert device.cpu_flags(x86) == frozenset({"fpu", "avx2", "avx512_bf16"})
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert device.cpu_flags(arm) == frozenset({"fp", "asimd", "bf16"})
    assert device.cpu_flags(tmp_path / "missing") is None
    other = tmp_path / "other"
    other.write_text("processor\t: 0\nmodel name\t: something\n")
    assert device.cpu_flags(other) is None  # no flags line


def test_an_explicit_precision_is_kept_with_its_reason() -> None:
    assert device.choose_precision("bf16", 64) == PrecisionChoice("bf16", "requested")
    assert device.choose_precision("no", 768) == PrecisionChoice("no", "requested")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], capability: str) -> None:
    """This process's CPU, as the precision policy sees it; the tiny test model counts as wide enough."""
    import torch

    monkeypatch.setattr(device, "cpu_flags", lambda path=device.CPUINFO: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(device, "BF16_MIN_WIDTH", 32)
    monkeypatch.setattr(device, "bf16_probe_gain", never_probed)


def test_a_native_cpu_trains_auto_in_bf16_and_says_why(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, ZEN4, "AVX512")
    events: list = []
    result = train(tiny(name="native"), on_event=events.append)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.mixed_precision, started.precision_reason) == ("bf16", "native AVX512_BF16")
    assert device_label(started).endswith(", bf16 (native AVX512_BF16)")
    assert describe(started).startswith(f"training native: {started.parameters:,} parameters on CPU, ")
    assert json.loads(json.dumps(started.__dict__))["precision_reason"] == "native AVX512_BF16"
    assert result.perplexity_after < result.perplexity_before
    meta = json.loads((Path(result.path) / "gpt2tui.json").read_text())
    assert meta["hyperparameters"]["mixed_precision"] == "bf16"


def test_an_avx2_cpu_trains_auto_in_fp32(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, AVX2, "AVX2")
    events: list = []
    train(tiny(name="avx2", max_steps=2), on_event=events.append)
    assert (events[0].mixed_precision, events[0].precision_reason) == ("no", "no native bf16, AVX2")
    assert device_label(events[0]).endswith(", fp32 (no native bf16, AVX2)")


def test_bf16_stores_fp32_weights_that_evaluate_and_generate_like_any_model(home: Path) -> None:
    """Autocast computes in bf16; the weights (and so eval and generation of the stored model) stay fp32."""
    import torch
    from safetensors import safe_open

    from gpt2tui.core.evaluation import eval_loader, loss_over
    from gpt2tui.core.generation import GenerationSettings, complete
    from gpt2tui.core.models import load_local
    from gpt2tui.core.store import ModelStore
    from gpt2tui.core.training import prepare

    result = train(tiny(name="bf16", mixed_precision="bf16"))
    with safe_open(str(Path(result.path) / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float32}  # noqa: SIM118
    model, tokenizer = load_local(result.path)
    assert model.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    forward = type(model).forward
    assert model.forward.__func__ is forward  # no autocast wrapper travels with the stored model
    # The run's own held-out eval (under autocast) matches an fp32 eval of the stored weights closely.
    job = prepare(tiny(name="again"), ModelStore(), None, False)
    assert loss_over(model, eval_loader(job.eval_loader.dataset)) == pytest.approx(
        result.eval_loss_after, rel=1e-3
    )
    ids = tokenizer("What is Mars?", return_tensors="pt").input_ids
    assert model(input_ids=ids).logits.dtype == torch.float32
    settings = GenerationSettings(strategy="greedy", max_new_tokens=8, seed=0)
    assert isinstance(complete(model, tokenizer, "What is Mars?", settings), str)


def test_a_resumed_run_keeps_the_precision_it_began_with(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, ZEN4, "AVX512")
    run = launch.create(tiny(name="resumed", max_steps=12, save_every=0))
    stop = threading.Event()

    def stop_at_four(event: object) -> None:
        if isinstance(event, StepLogged) and event.step == 4:
            stop.set()

    first = train(launch.train_config(run), on_event=stop_at_four, stop=stop, run=run)
    assert first.stopped
    fake_cpu(monkeypatch, AVX2, "AVX2")  # the machine now answers otherwise: the run must not change
    events: list = []
    train(launch.train_config(run), on_event=events.append, run=run, resume=True)
    assert (events[0].resumed_from, events[0].mixed_precision) == (4, "bf16")
    assert events[0].precision_reason == "native AVX512_BF16"
