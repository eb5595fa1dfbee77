"""Training events are plain data that survive a JSON round trip (the future run log depends on it)."""

from __future__ import annotations

import json

from gpt2tui.core.events import (
    EvalFinished,
    RunFailed,
    RunFinished,
    RunStarted,
    StepLogged,
    event_from_dict,
    event_to_dict,
)


def test_every_event_round_trips_through_json() -> None:
    events = [
        RunStarted("m", "scratch", "cpu", "no", 10, 5, 1, 128, 1024, 1000),
        StepLogged(1, 10, 0.1, 5.5, 1e-3, 1000.0, 1.0, 9.0),
        EvalFinished(0, 6.0, 403.4, "sample"),
        RunFinished("m", "/p", 10, False, 6.0, 5.0, 403.4, 148.4, 10240, 1000.0, 12.0),
        RunFailed("boom"),
    ]
    for event in events:
        line = json.dumps(event_to_dict(event))
        assert event_from_dict(json.loads(line)) == event


def test_unknown_fields_are_ignored_by_readers() -> None:
    data = event_to_dict(RunFailed("x"))
    data["added_later"] = 1
    assert event_from_dict(data) == RunFailed("x")
