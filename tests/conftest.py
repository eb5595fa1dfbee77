"""Shared fixtures: an isolated data home per test, no outside network, and one tiny trained model per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt2tui.core.quiet import quiet_environment

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
QA_CSV = SAMPLES / "qa.csv"
KJV_TXT = SAMPLES / "kjv_sample.txt"
CLOSED_ENDPOINT = "http://127.0.0.1:9"  # loopback discard port: refused at once, never leaves the machine

quiet_environment()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own GPT2TUI_HOME and an empty Hugging Face cache; the Hub probe stays on loopback."""
    root = tmp_path / "home"
    monkeypatch.setenv("GPT2TUI_HOME", str(root))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_ENDPOINT)
    yield root
    end_live_runs(root / "runs")


def end_live_runs(runs: Path) -> None:
    """Kill the run processes a test left training (a failed assertion skips its own clean-up): each would keep
    a core busy for the rest of the suite, and past it."""
    import signal

    from gpt2tui.core.procs import signal_process
    from gpt2tui.core.runs import list_runs

    if not runs.is_dir():
        return
    for run in list_runs(runs):
        status = run.recorded_status()
        if run.is_alive() and status.pid != os.getpid():  # some tests write a live run with their own pid
            signal_process(status.pid, status.pid_started, signal.SIGKILL)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch-tiny model trained for a few steps on the Q/A sample, built once per session."""
    import os

    from gpt2tui.core.data import DataSpec
    from gpt2tui.core.store import ModelStore
    from gpt2tui.core.training import TrainConfig, train

    root = tmp_path_factory.mktemp("session-home")
    old = os.environ.get("GPT2TUI_HOME")
    os.environ["GPT2TUI_HOME"] = str(root)
    try:
        result = train(
            TrainConfig(DataSpec(str(QA_CSV)), base="scratch", max_steps=30, name="tiny", log_every=5),
            store=ModelStore(root / "models"),
        )
    finally:
        if old is None:
            os.environ.pop("GPT2TUI_HOME", None)
        else:
            os.environ["GPT2TUI_HOME"] = old
    return Path(result.path)


@pytest.fixture
def tiny_model(trained_tiny: Path, home: Path) -> str:
    """The session's tiny model copied into this test's store, under the name 'tiny'."""
    shutil.copytree(trained_tiny, home / "models" / "tiny")
    return "tiny"


def tree_snapshot(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: compared before and after an error to prove nothing changed."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def gpt2tui_command(*args: str) -> list[str]:
    """``gpt2tui ARGS`` as this interpreter runs it (the checkout under test, not another install)."""
    return [sys.executable, "-m", "gpt2tui", *args]


def cli(*args: str, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``gpt2tui ARGS`` as a real process, with this test's environment (its GPT2TUI_HOME)."""
    return subprocess.run(
        gpt2tui_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        **kwargs,
    )


def cli_together(*commands: tuple[str, ...], timeout: float = 240) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``commands`` as ``gpt2tui ARGS`` processes started together, in order of ``commands``.

    Independent commands (a generate and an eval of the same stored model) overlap their Python and torch
    start-up, which is most of their time: on two cores, four of them take about half as long as in a row.
    Every process is ended before this returns, also when one times out.
    """
    env = os.environ.copy()
    processes = [
        subprocess.Popen(
            gpt2tui_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in commands
    ]
    try:
        results = []
        for args, process in zip(commands, processes, strict=True):
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(gpt2tui_command(*args), process.returncode, out, err))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
