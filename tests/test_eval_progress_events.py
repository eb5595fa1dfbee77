"""Evaluation progress during training: a plain event, round-tripped like the others, a few a second at most.

The interval is patched (0: every batch is due; huge: none is), so nothing here depends on timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2tui.core import events as events_module
from gpt2tui.core import training
from gpt2tui.core.data import DataSpec
from gpt2tui.core.events import (
    EvalFinished,
    EvalProgress,
    RunStarted,
    describe,
    event_from_dict,
    event_to_dict,
    known_event,
)
from gpt2tui.core.training import TrainConfig, train
from tests.conftest import QA_CSV


def tiny_run() -> TrainConfig:
    """Two steps of scratch tiny on the Q/A sample, block 32: about a dozen held-out blocks."""
    return TrainConfig(DataSpec(str(QA_CSV)), base="scratch", max_steps=2, log_every=1, block_size=32)


def test_progress_round_trips_and_has_a_line() -> None:
    event = EvalProgress(step=40, blocks_done=40, blocks_total=120)
    data = json.loads(json.dumps(event_to_dict(event)))
    assert data["event"] == "EvalProgress" and known_event(data["event"])
    assert event_from_dict(data) == event
    assert describe(event) == "evaluating at step 40: 40/120 blocks"
    assert describe(EvalProgress(0, 3, 12)) == "evaluating before training: 3/12 blocks"
    assert EvalProgress(0, 0, 0).fraction == 0.0


def test_each_evaluation_reports_its_progress_before_it_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "EVAL_BATCH_SIZE", 1)  # a block per batch: a progress call per block
    monkeypatch.setattr(events_module, "EVAL_PROGRESS_SECONDS", 0.0)  # every call is due
    seen: list[object] = []
    train(tiny_run(), on_event=seen.append)
    blocks = next(e for e in seen if isinstance(e, RunStarted)).eval_blocks
    assert blocks >= 3
    evals = [i for i, e in enumerate(seen) if isinstance(e, EvalFinished)]
    assert [seen[i].step for i in evals] == [0, 2]  # type: ignore[attr-defined]
    start = 0
    for end in evals:
        progress = [e for e in seen[start:end] if isinstance(e, EvalProgress)]
        step = seen[end].step  # type: ignore[attr-defined]
        # Every block but the last (EvalFinished says that one), in order, for this evaluation's step.
        assert [(p.step, p.blocks_done, p.blocks_total) for p in progress] == [
            (step, done, blocks) for done in range(1, blocks)
        ]
        start = end + 1


def test_an_evaluation_shorter_than_the_interval_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "EVAL_BATCH_SIZE", 1)
    monkeypatch.setattr(events_module, "EVAL_PROGRESS_SECONDS", 1e9)
    seen: list[object] = []
    train(tiny_run(), on_event=seen.append)
    assert not any(isinstance(e, EvalProgress) for e in seen)
    assert sum(isinstance(e, EvalFinished) for e in seen) == 2


WORKER = """
import sys
from gpt2tui.core import events, training
from gpt2tui.core.launch import worker_main
training.EVAL_BATCH_SIZE = 1
events.EVAL_PROGRESS_SECONDS = 0.0
raise SystemExit(worker_main([sys.argv[1]]))
"""


def test_the_run_log_leaves_progress_out(home: Path) -> None:
    """A run process records every progress event in events.jsonl (the TUI reads it); its plain lines
    (run.log) leave them out. In a process of its own, as a run is: the worker sets threads and signals."""
    from gpt2tui.core import launch
    from gpt2tui.core.runs import Run

    run = launch.create(tiny_run())
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(run.folder)],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    recorded, _ = Run(run.folder).events()
    assert any(isinstance(r.event, EvalProgress) for r in recorded)
    lines = done.stdout.splitlines()
    assert any(line.startswith("eval before training") for line in lines)
    assert not any(line.startswith("evaluating") for line in lines)
