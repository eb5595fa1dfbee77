"""The CPU thread policy: chosen from the free cores before torch loads, overridable, shown in the header."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from gpt2tui.core import device
from tests.conftest import QA_CSV, cli


def python_words(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> list[str]:
    """What ``python -c code args...`` prints, split into words (it must succeed)."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_requested_threads_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert device.plan_threads(3).threads == 3 and device.plan_threads(3).reason == "--threads"


def test_a_users_omp_num_threads_is_respected_but_not_one_gpt2tui_set_for_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device, "usable_cores", lambda: 4)
    monkeypatch.setattr(device, "busy_cores", lambda cores, seconds=0.0: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv(device.APPLIED_ENV, raising=False)
    assert (device.plan_threads().threads, device.plan_threads().reason) == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv(device.APPLIED_ENV, "2")  # a gpt2tui parent (the TUI) set it for itself
    assert (device.plan_threads().threads, device.plan_threads().reason) == (3, "free cores")


def test_processes_side_by_side_divide_the_cores_they_planned_but_not_a_users_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(device.SHARE_ENV, raising=False)
    free = [device.ThreadPlan(threads, 8, 0, "free cores") for threads in (8, 3, 2, 1)]
    assert [device.shared_threads(plan, 2) for plan in free] == [4, 1, 1, 1]  # never fewer than one
    assert [device.shared_threads(plan, 1) for plan in free] == [8, 3, 2, 1]
    assert device.shared_threads(free[0], 3) == 2
    for reason in ("--threads", "OMP_NUM_THREADS"):
        assert device.shared_threads(device.ThreadPlan(4, 8, 0, reason), 2) == 4
    monkeypatch.setenv(device.SHARE_ENV, "default")
    assert device.shared_threads(free[0], 2) == 8


def test_busy_cores_are_left_to_their_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)

    monkeypatch.setattr(device.time, "sleep", lambda seconds: None)
    fields = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
    Times = namedtuple("Times", fields)  # psutil's own shape
    zero = Times(*[0.0] * len(fields))

    def sample(*user_nice: tuple[float, float]) -> None:
        """Counter readings 1 s apart in which each core spent ``user`` and ``nice`` percent."""
        after = [
            Times(user / 100, nice / 100, 0.01, (94 - user - nice) / 100, 0, 0, 0.01, 0.04, user / 200, 0)
            for user, nice in user_nice
        ]
        readings = iter([[zero] * len(after), after] * 10)
        monkeypatch.setattr(psutil, "cpu_times", lambda percpu: next(readings))

    sample((90.0, 0.0), (3.0, 0.0))
    plan = device.plan_threads()
    assert (plan.threads, plan.busy, plan.describe()) == (1, 1, "1 of 2 cores, 1 busy (free cores)")
    sample((94.0, 0.0), (94.0, 0.0))
    assert device.plan_threads().threads == 1  # never fewer than one
    sample((21.0, 0.0), (3.0, 0.0))
    assert device.plan_threads().threads == 2
    sample((19.0, 0.0), (70.0, 0.0))  # one process moved between the cores during the sample
    assert device.plan_threads().busy == 1
    sample((0.0, 97.0), (3.0, 0.0))  # a niced job
    monkeypatch.setattr(device, "autogroup_enabled", lambda: False)
    assert device.plan_threads().threads == 2  # yields its core: it is not taken away from the run
    monkeypatch.setattr(device, "autogroup_enabled", lambda: True)
    assert device.plan_threads().threads == 1  # in another session's group it keeps its share


def test_autogroup_is_read_from_the_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    switch = tmp_path / "sched_autogroup_enabled"
    monkeypatch.setattr(device, "AUTOGROUP", switch)
    assert device.autogroup_enabled() is False  # no such switch: nice ranks every task
    switch.write_text("1\n")
    assert device.autogroup_enabled() is True
    switch.write_text("0\n")
    assert device.autogroup_enabled() is False


def test_the_plan_reaches_openmp_before_torch_loads() -> None:
    code = (
        "import os, sys\n"
        "from gpt2tui.core.device import configure_threads\n"
        "from gpt2tui.core.device import ThreadPlan, apply_threads\n"
        "configure_threads(1)\n"
        "assert 'OMP_WAIT_POLICY' not in os.environ  # idle: OpenMP's own waiting\n"
        "apply_threads(ThreadPlan(2, 4, 1, 'free cores'))  # sharing the machine: waiting threads sleep\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'])\n"
    )
    assert python_words(code) == ["2", "PASSIVE"]


def test_threads_option_runs_and_the_header_shows_it(home: Path) -> None:
    run = cli("train", str(QA_CSV), "--base", "scratch", "--max-steps", "2", "--threads", "1", "--json")
    assert run.returncode == 0, run.stderr
    assert "on CPU, 1 thread, fp32 (" in run.stdout
    assert json.loads(run.stdout.splitlines()[-1])["steps"] == 2
    bad = cli("train", str(QA_CSV), "--base", "scratch", "--threads", "0")
    assert bad.returncode == 2
    assert bad.stderr == "gpt2tui: Argument --threads: must be at least 1, not 0.\n"


def test_the_tokenizers_pool_gets_the_plan_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # the environment branch: torch is "not loaded"
    del sys.modules["torch"]
    for name in ("RAYON_NUM_THREADS", device.APPLIED_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    device.apply_threads(device.ThreadPlan(1, 2, 1, "free cores"))
    assert device.os.environ["RAYON_NUM_THREADS"] == "1"
    device.apply_threads(device.ThreadPlan(2, 2, 0, "free cores"))  # ours before: replaced
    assert device.os.environ["RAYON_NUM_THREADS"] == "2"
    monkeypatch.setenv("RAYON_NUM_THREADS", "5")  # the user's own
    device.apply_threads(device.ThreadPlan(1, 2, 1, "free cores"))
    assert device.os.environ["RAYON_NUM_THREADS"] == "5"


def test_loading_a_model_takes_the_heap_out_of_the_cycle_collectors_scans(trained_tiny: Path) -> None:
    """What a loaded model and the libraries allocated is frozen (``gc.freeze``): a full collection no
    longer walks it."""
    code = (
        "import gc, sys\n"
        "from gpt2tui.core import generation\n"
        "before = gc.get_freeze_count()\n"
        "loaded = generation.load(sys.argv[1])\n"
        "print(before, gc.get_freeze_count())\n"
    )
    before, frozen = map(int, python_words(code, str(trained_tiny), timeout=180))
    assert before == 0
    assert frozen > 100_000  # torch, transformers and the model: hundreds of thousands of objects


def test_the_heap_freeze_has_an_off_switch() -> None:
    code = "import gc\nfrom gpt2tui.core.device import freeze_heap\nprint(freeze_heap(), gc.get_freeze_count())\n"
    assert python_words(code, env={**os.environ, device.GC_ENV: "default"}) == ["False", "0"]
    assert python_words(code, env={**os.environ, device.GC_ENV: ""})[0] == "True"


def test_garbage_in_cycles_is_collected_before_the_freeze_not_kept_forever() -> None:
    """A closed screen's widgets refer to each other: frozen as garbage, they would never be freed."""
    code = (
        "import gc, weakref\n"
        "from gpt2tui.core.device import freeze_heap\n"
        "class Node: pass\n"
        "def cycle():\n"
        "    a, b = Node(), Node()\n"
        "    a.other, b.other = b, a\n"
        "    return weakref.ref(a)\n"
        "gc.disable()  # no automatic collection between here and the freeze\n"
        "collected, kept = cycle(), cycle()\n"
        "freeze_heap()\n"
        "gc.unfreeze()\n"
        "kept = cycle()\n"
        "freeze_heap(collect=False)\n"
        "gc.collect()\n"
        "print(collected() is None, kept() is None)\n"
    )
    assert python_words(code) == ["True", "False"]  # collected first; without it, frozen for good
