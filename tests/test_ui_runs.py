"""Pilot tests of runs in the TUI: the run watcher, the monitor (by run id), the run list and quitting.

Most runs here are folders written by hand (``config.json``, ``status.json``, ``events.jsonl``), exactly as a
run process, the CLI or an earlier TUI leaves them, so the monitor is tested without training. A few tests
start real runs through the setup screen (scratch tiny on the Q/A sample, a few seconds each); every test
that may start one ends them in a ``finally`` (the ``no_runs_left`` fixture), even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, RichLog, Select, Static

from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.events import (
    EvalFinished,
    RunFailed,
    RunFinished,
    RunStarted,
    StepLogged,
    TrainingEvent,
    event_to_dict,
)
from gpt2tui.core.launch import file_digest, stop
from gpt2tui.core.procs import hostname, start_time
from gpt2tui.core.runs import DIED, list_runs
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import TrainConfig
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.screens.monitor import KEEPS_RUNNING, MonitorScreen
from gpt2tui.ui.screens.setup import SetupScreen
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
from gpt2tui.ui.widgets.loss_plot import LossPlot
from tests.conftest import QA_CSV
from tests.test_ui_app import SIZE, SMALL, make_app, open_setup, record_notes, text_of, visible_text, wait_for

FINISHED_ID = "20240101-120000-aaaa"
LIVE_ID = "20240102-120000-bbbb"
RUN_END_SECONDS = 120.0


# ------------------------------------------------------------------------------------------ run folders


def write_run(
    home: Path,
    run_id: str,
    events: list[TrainingEvent],
    state: str = "finished",
    extra_lines: list[str] | None = None,
    **status: object,
) -> Path:
    """A run folder as a run process leaves it; ``extra_lines`` are appended to events.jsonl verbatim."""
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    config = TrainConfig(
        DataSpec(str(QA_CSV)), base="scratch", max_steps=6, name="hand", sample_prompt="Question: Why?"
    )
    sha256, size = file_digest(str(QA_CSV))
    record = {
        "schema_version": 1,
        "run": run_id,
        "train": config.to_dict(),
        "dataset": {"path": str(QA_CSV), "sha256": sha256, "size": size},
        "num_processes": 1,
    }
    (folder / "config.json").write_text(json.dumps(record))
    lines = [
        json.dumps({"run": run_id, "seq": seq, "time": 1_700_000_000.0 + seq, **event_to_dict(event)})
        for seq, event in enumerate(events, start=1)
    ]
    (folder / "events.jsonl").write_text("".join(line + "\n" for line in lines) + "".join(extra_lines or []))
    last_loss = next((e.loss for e in reversed(events) if isinstance(e, EvalFinished)), None)
    (folder / "status.json").write_text(
        json.dumps(
            {
                "run": run_id,
                "state": state,
                "step": 6,
                "total_steps": 6,
                "model": "hand",
                "updated": "2024-01-01T12:00:10+00:00",
                "last_eval_loss": last_loss,
                **status,
            }
        )
    )
    return folder


def started() -> RunStarted:
    return RunStarted(
        "hand",
        "scratch",
        "cpu",
        "bf16",
        6,
        40,
        5,
        128,
        1024,
        200_000,
        threads=2,
        precision_reason="native AMX",
    )


def step(n: int, loss: float) -> StepLogged:
    return StepLogged(n, 6, n / 5, loss, 1e-3, 9000.0, n * 0.1, (6 - n) * 0.1)


def finished_history(evals: list[tuple[int, float]]) -> list[TrainingEvent]:
    """RunStarted, steps 1-6 with evaluations at the given steps, and RunFinished."""
    events: list[TrainingEvent] = [started()]
    by_step = dict(evals)
    if 0 in by_step:
        events.append(EvalFinished(0, by_step[0], 20.0, sample="before"))
    for n in range(1, 7):
        events.append(step(n, 4.0 - n * 0.3))
        if n in by_step:
            events.append(EvalFinished(n, by_step[n], 10.0 + n, sample=f"sample {n}"))
    events.append(RunFinished("hand", "/models/hand", 6, False, 3.0, 2.9, 20.1, 18.2, 6144, 9000.0, 0.6))
    return events


def live_status() -> dict[str, object]:
    """A status that reads as live: this very test process's pid and start time."""
    return {"pid": os.getpid(), "pid_started": start_time(os.getpid()), "hostname": hostname()}


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(autouse=True)
def no_runs_left(home: Path) -> Iterator[None]:
    """After each test, stop every run process it started (SIGTERM: it saves and exits), SIGKILL if stuck."""
    yield
    for run in list_runs(home / "runs"):
        status = run.status()
        if not status.live or status.pid == os.getpid():
            continue
        with contextlib.suppress(UserError):  # it ended between the two reads
            stop(run)
        deadline = time.monotonic() + RUN_END_SECONDS
        while run.status().live and time.monotonic() < deadline:
            time.sleep(0.2)
        if run.status().live and status.pid:
            os.kill(status.pid, signal.SIGKILL)


async def open_monitor(pilot, app: GPT2TUIApp, run_id: str) -> MonitorScreen:  # type: ignore[no-untyped-def]
    """From home: wait for the run's row, put the cursor on it and press o."""
    home = app.screen
    assert isinstance(home, HomeScreen)
    runs = home.query_one("#runs", DataTable)
    await wait_for(pilot, lambda: run_id in [key.value for key in runs.rows], f"run {run_id} listed")
    runs.focus()
    runs.move_cursor(row=runs.get_row_index(run_id))
    await pilot.press("o")
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
    assert isinstance(app.screen, MonitorScreen)
    return app.screen


# ------------------------------------------------------------------------------------------ hand-written runs


async def test_monitor_rebuilds_a_finished_run_from_its_folder(home: Path) -> None:
    """History from events.jsonl: evaluations, log, plot, overfitting, outcome; junk lines change nothing."""
    evals = [(0, 3.0), (2, 2.5), (4, 2.7), (6, 2.9)]
    unknown = json.dumps({"run": FINISHED_ID, "seq": 90, "time": 0, "event": "FromANewerVersion", "x": 1})
    truncated = '{"run": "' + FINISHED_ID + '", "seq": 99, "event": "StepLo'
    write_run(home, FINISHED_ID, finished_history(evals), extra_lines=[unknown + "\n", truncated])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, app, FINISHED_ID)
        assert monitor.state == "finished"
        assert " · CPU, 2 threads, bf16 (native AMX) · " in text_of(monitor.query_one("#info", Static))
        table = monitor.query_one("#evals", DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["before", "2", "4", "6"]
        assert table.border_subtitle == "best: step 2 (2.5000)"
        log = "\n".join(line.text for line in monitor.query_one("#log", RichLog).lines)
        assert "step     6/6  loss 2.2000" in log
        assert "eval at step 4: loss 2.7000, perplexity 14.00" in log
        plot = monitor.query_one("#plot", LossPlot)
        assert len(plot.points) == 6
        assert plot.evals == evals  # held-out losses drawn with the training loss
        assert "● held-out last 2.9000 · lowest 2.5000" in plot.legend().plain
        await pilot.pause()
        assert visible_text(app, plot).count("●") == 1 + len(evals)  # the legend's, then one per evaluation
        notice = monitor.query_one("#notice", Static)
        assert notice.display
        assert text_of(notice) == "Overfitting since step 2: held-out loss rose at the last two evaluations."
        assert "Saved as hand (6 steps" in text_of(monitor.query_one("#outcome", Static))
        samples = [text_of(sample) for sample in monitor.query(".sample").results(Static)]
        assert samples == [  # every evaluation's sample, oldest first, not only the newest
            "before training:\nbefore",
            "after step 2:\nsample 2",
            "after step 4:\nsample 4",
            "after step 6:\nsample 6",
        ]
        assert "from the prompt:\nQuestion: Why?" in text_of(monitor.query_one("#sample-prompt", Static))
        assert monitor.check_action("chat", ()) and not monitor.check_action("stop", ())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home again")


async def test_monitor_shows_why_a_run_failed_and_offers_resume(home: Path) -> None:
    """A failure event's sentence; a process that died without one; resume refused with the core's sentence."""
    write_run(home, FINISHED_ID, [started(), step(1, 4.0), RunFailed("The disk is full.")], state="failed")
    write_run(
        home,
        LIVE_ID,
        [started(), step(1, 4.0)],
        state="running",
        pid=dead_pid(),
        pid_started=1.0,
        hostname=hostname(),
    )
    # The data "changed" since the run started: resuming it would train on other data.
    config = home / "runs" / FINISHED_ID / "config.json"
    record = json.loads(config.read_text())
    record["dataset"]["sha256"] = "0" * 64
    config.write_text(json.dumps(record))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, app, FINISHED_ID)
        outcome = monitor.query_one("#outcome", Static)
        assert monitor.state == "failed" and outcome.has_class("error")
        assert text_of(outcome).startswith("The run failed: The disk is full.  Press r to resume it")
        assert monitor.check_action("resume", ()) and not monitor.check_action("chat", ())
        await pilot.press("r")
        await wait_for(pilot, lambda: "changed since run" in text_of(outcome), "the resume refusal")
        assert text_of(outcome) == (
            f"The dataset {QA_CSV} changed since run {FINISHED_ID} started; resuming would train on other "
            "data, so start a new run instead."
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home again")

        runs = app.screen.query_one("#runs", DataTable)
        runs.move_cursor(row=runs.get_row_index(LIVE_ID))
        await pilot.pause()
        note = text_of(app.screen.query_one("#run-note", Static))
        # The screen's key, not the CLI's command (which stays in the sentence `gpt2tui runs` prints).
        assert note == (
            f"Run {LIVE_ID} failed: the training process ended without saving its state; r resumes it from its "
            "last checkpoint."
        )
        monitor = await open_monitor(pilot, app, LIVE_ID)
        assert monitor.state == "failed"
        assert text_of(monitor.query_one("#outcome", Static)).startswith(
            "The run failed: the training process ended without saving its state  Press r to resume it"
        )
        assert "gpt2tui runs resume" not in text_of(monitor.query_one("#outcome", Static))
        assert DIED.endswith("`gpt2tui runs resume {run}`")


async def test_home_lists_runs_and_refuses_to_remove_a_live_one(home: Path) -> None:
    write_run(home, FINISHED_ID, finished_history([(0, 3.0), (6, 2.0)]))
    write_run(home, LIVE_ID, [started(), step(1, 4.0)], state="running", **live_status())
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, HomeScreen)
        runs = screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: runs.row_count == 2, "both runs listed")
        assert [str(c) for c in runs.get_row(LIVE_ID)][:4] == [LIVE_ID, "running", "6/6", "hand"]
        assert [str(c) for c in runs.get_row(FINISHED_ID)][:5] == [
            FINISHED_ID,
            "finished",
            "6/6",
            "hand",
            "2.0000",
        ]
        assert app.focused is runs and screen.selected_run() == LIVE_ID  # newest first; no models yet
        assert f"gpt2tui runs attach {LIVE_ID}" in text_of(screen.query_one("#run-note", Static))

        await pilot.press("d")
        assert isinstance(app.screen, HomeScreen)  # refused without a question
        assert notes == [f"Run {LIVE_ID} is still running; stop it first with `gpt2tui runs stop {LIVE_ID}`."]
        assert (home / "runs" / LIVE_ID).is_dir()

        await pilot.press("down", "d")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Its model 'hand' stays." in text_of(app.screen.query_one("#question", Static))
        await pilot.press("y")
        await wait_for(pilot, lambda: runs.row_count == 1, "the removed run gone from the list")
        assert not (home / "runs" / FINISHED_ID).exists()
        assert notes[-1] == f"Removed run {FINISHED_ID}."


async def test_home_lists_a_broken_model_folder_and_deletes_it(home: Path) -> None:
    (home / "models" / "half").mkdir(parents=True)
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        models = app.screen.query_one("#models", DataTable)
        assert [str(c) for c in models.get_row("half")][:2] == ["half", "broken: it has no config.json"]
        await pilot.press("c")
        assert notes == [
            "The model folder 'half' is broken (it has no config.json); it can only be deleted (d)."
        ]
        await pilot.press("d", "y")
        await pilot.pause()
        assert not (home / "models" / "half").exists()


async def test_quit_with_a_live_run_exits_at_once_and_leaves_it_running(home: Path) -> None:
    write_run(home, LIVE_ID, [started(), step(1, 4.0)], state="running", **live_status())
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
        assert not any(isinstance(s, ConfirmDialog) for s in app.screen_stack)
    assert app.return_code == 0
    assert app.quit_note == (
        f"gpt2tui: 1 run still training ({LIVE_ID}); `gpt2tui runs attach {LIVE_ID}` or reopening gpt2tui "
        "shows it."
    )
    assert json.loads((home / "runs" / LIVE_ID / "status.json").read_text())["state"] == "running"


async def test_a_finished_run_is_listed_when_the_watcher_reports_it_while_home_mounts(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app passes the watcher's news only to mounted screens; home is not mounted until its ``on_mount``
    returns, and a finished run's status never changes again, so news that came while home mounted its footer
    was lost: the run was never listed (a CI run timed out waiting for it). A slow footer makes it certain."""
    import asyncio

    from gpt2tui.ui.screens import home as home_module

    class SlowFooter(home_module.Footer):  # type: ignore[misc, valid-type]
        async def on_mount(self) -> None:
            await asyncio.sleep(0.5)  # the watcher's first poll reports the run meanwhile

    monkeypatch.setattr(home_module, "Footer", SlowFooter)
    write_run(
        home,
        FINISHED_ID,
        [started(), RunFinished("hand", "/m", 20, False, 5.0, 3.0, 148.0, 20.0, 1, 9000.0, 2.0)],
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: app.screen.is_mounted and app.run_book.statuses, "the watcher's report")
        await pilot.pause(0.3)
        assert [key.value for key in runs.rows] == [FINISHED_ID]


@pytest.mark.parametrize("size", [SMALL, SIZE], ids=["80x24", "120x40"])
async def test_finished_monitor_shows_progress_newest_eval_and_last_log_line(
    home: Path, size: tuple[int, int]
) -> None:
    """Port of the in-process monitor's layout test: eleven evaluations and more log lines than fit; the newest
    of each stays in view under the outcome banner, the progress text keeps ETA and tok/s, and the first
    evaluation is one scroll away."""
    events: list[TrainingEvent] = [started(), EvalFinished(0, 5.0, 148.0)]
    for n in range(1, 21):
        events.append(StepLogged(n, 20, n / 10, 5.0 - n * 0.1, 1e-3, 9000.0, n * 0.1, (20 - n) * 0.1))
        if n % 2 == 0:
            events.append(EvalFinished(n, 5.0 - n * 0.1, 100.0))
    events.append(RunFinished("hand", "/m", 20, False, 5.0, 3.0, 148.0, 20.0, 1, 9000.0, 2.0))
    write_run(home, FINISHED_ID, events)
    app = make_app()
    async with app.run_test(size=size) as pilot:
        monitor = await open_monitor(pilot, app, FINISHED_ID)
        evals = monitor.query_one("#evals", DataTable)
        log = monitor.query_one("#log", RichLog)
        progress = monitor.query_one("#progress-text", Static)
        assert evals.row_count == 11

        def last_row(widget: DataTable | RichLog) -> str:  # type: ignore[type-arg]
            rows = [row.strip(" │▁▂▃▄▅▆▇█") for row in visible_text(app, widget).splitlines()]
            return [row for row in rows if row and not row.startswith("╰")][-1]

        await wait_for(pilot, lambda: last_row(evals).startswith("20 "), "the step-20 evaluation in view")
        await wait_for(pilot, lambda: "tok/s)" in last_row(log), "the last log line")
        shown = " ".join(row.strip(" │▁▂▃▄▅▆▇█") for row in visible_text(app, log).splitlines())
        # wrapped whole at the panel's width (it was wrapped at 78 columns and cropped, losing words)
        assert "saved hand at /m: perplexity 148.00 -> 20.00 in 0:00:02 (9,000 tok/s)" in " ".join(
            shown.split()
        )
        shown = visible_text(app, progress)
        assert "step 20/20" in shown and "ETA" in shown and "tok/s" in shown
        assert "step    20/20  loss" in visible_text(app, log)
        evals.scroll_home(animate=False)
        await wait_for(pilot, lambda: "before" in visible_text(app, evals), "the evaluation before training")


# ------------------------------------------------------------------------------------------ real runs


async def start_from_setup(  # type: ignore[no-untyped-def]
    pilot, app: GPT2TUIApp, max_steps: int, eval_every: int, picker: bool = True
) -> MonitorScreen:
    """Set up a scratch-tiny run named ui-model and start it with ctrl+s; ``picker``: through the dataset
    picker (as a user does), else straight to the setup (the preview's tokenizer training costs seconds)."""
    if picker:
        setup = await open_setup(pilot, app)
    else:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
    assert app.focused is setup.query_one("#base_kind", Select)  # not the Start button
    setup.query_one("#max_steps", Input).value = str(max_steps)
    setup.query_one("#eval_every", Input).value = str(eval_every)
    name = setup.query_one("#name", Input)
    name.value = "ui-model"
    name.focus()
    await pilot.press("enter")  # Enter in a field never starts training
    assert app.screen is setup and not list_runs()
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the run's monitor")
    assert isinstance(app.screen, MonitorScreen)
    return app.screen


async def test_a_run_started_from_the_setup_finishes_and_its_model_is_listed(home: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_from_setup(pilot, app, max_steps=30, eval_every=10)
        assert len(list_runs()) == 1 and monitor.run_id == list_runs()[0].id
        await wait_for(pilot, lambda: monitor.state == "finished", "the run to finish")
        outcome = text_of(monitor.query_one("#outcome", Static))
        assert "Saved as ui-model (30 steps" in outcome and "Press c to chat with it" in outcome
        assert [e.step for e in monitor.evals] == [0, 10, 20, 30]
        assert len(monitor.query_one("#plot").points) == 30
        assert "step 30/30" in text_of(monitor.query_one("#progress-text", Static))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home")
        home_screen = app.screen
        models = home_screen.query_one("#models", DataTable)
        await wait_for(pilot, lambda: models.row_count == 1, "the model listed")
        row = [str(c) for c in models.get_row("ui-model")]
        assert row[0] == "ui-model" and "→" in row[1]
        assert row[2:4] == ["scratch (tiny)", "qa.csv (68 rows)"]
        runs = home_screen.query_one("#runs", DataTable)
        assert str(runs.get_row(monitor.run_id)[1]) == "finished"
    info = ModelStore().get("ui-model")
    assert info.metadata.steps == 30 and info.metadata.stopped is False


async def test_leaving_keeps_the_run_going_and_s_stops_it_with_the_model_saved(home: Path) -> None:
    """Escape says the run goes on; reopening shows its whole history; s stops it and the model is saved;
    r resumes it from the checkpoint, and s stops it again."""
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_from_setup(pilot, app, max_steps=5000, eval_every=0, picker=False)
        run_id = monitor.run_id
        plot = monitor.query_one("#plot")
        await wait_for(pilot, lambda: len(plot.points) >= 3, "three training steps")
        seen = len(plot.points)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home while it trains")
        assert notes[-1] == KEEPS_RUNNING.format(run=run_id)
        monitor = await open_monitor(pilot, app, run_id)
        assert len(monitor.query_one("#plot").points) >= seen  # the whole history at once
        assert monitor.state == "running"
        await pilot.press("s")
        if monitor.state != "stopped":  # on a loaded machine the save can finish before the key returns
            assert "Stopping: the run saves a checkpoint and its model" in text_of(
                monitor.query_one("#outcome", Static)
            )
        await wait_for(pilot, lambda: monitor.state == "stopped", "the stopped run to save")
        outcome = text_of(monitor.query_one("#outcome", Static))
        assert "Saved as ui-model (stopped early after" in outcome and "r resumes training" in outcome
        assert monitor.check_action("chat", ()) and monitor.check_action("resume", ())
        info = ModelStore().get("ui-model")
        stopped_at = info.metadata.steps or 0
        assert info.metadata.stopped is True and 3 <= stopped_at < 5000

        await pilot.press("r")  # a new process continues from the checkpoint the stop saved
        log = monitor.query_one("#log", RichLog)
        resumed = f"resumed from step {stopped_at}"
        await wait_for(pilot, lambda: any(resumed in line.text for line in log.lines), "the resumed run")
        await wait_for(pilot, lambda: monitor.state == "running", "the running state")
        assert not monitor.query_one("#outcome").display
        plot = monitor.query_one("#plot")
        before = len(plot.points)
        await wait_for(pilot, lambda: len(plot.points) >= before + 2, "steps of the resumed run")
        await pilot.press("s")  # and it stops again, saving the same model
        await wait_for(pilot, lambda: monitor.state == "stopped", "the resumed run to stop")
    assert ModelStore().get("ui-model").metadata.stopped is True


async def test_a_failed_run_is_a_message_and_escape_goes_back_to_the_setup(home: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
        setup.query_one("#block_size", Input).value = "1000"
        setup.query_one("#name", Input).value = "too-long"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the run's monitor")
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen)
        await wait_for(pilot, lambda: monitor.state == "failed", "the run to fail")
        outcome = monitor.query_one("#outcome", Static)
        assert (
            "The run failed: --block-size 1000 is larger than the model's context length (256 tokens)."
            in (text_of(outcome))
        )
        assert outcome.has_class("error")
        await pilot.press("c")  # nothing to chat with: the key is disabled
        assert app.screen is monitor
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is setup, "the setup, to change it")
        assert not setup.query_one("#start").disabled
    assert not ModelStore().exists("too-long")


async def test_monitor_shows_evaluation_progress_then_the_step_line_again(home: Path) -> None:
    """A live run in the middle of an evaluation: the progress line says how far it is, and the step line
    comes back once the evaluation's result arrives (read from events.jsonl by the run watcher)."""
    from gpt2tui.core.events import EvalProgress

    history: list[TrainingEvent] = [started(), EvalFinished(0, 5.0, 148.0)]
    history += [step(n, 4.0 - n * 0.3) for n in range(1, 7)]
    history += [EvalProgress(6, 10, 120), EvalProgress(6, 40, 120)]
    folder = write_run(home, LIVE_ID, history, state="running", **live_status())
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, app, LIVE_ID)
        progress = monitor.query_one("#progress-text", Static)
        await wait_for(pilot, lambda: "evaluating" in text_of(progress), "the evaluation's progress")
        assert text_of(progress) == "step 6/6 · evaluating at step 6: 40/120 blocks (33%)"
        assert "step 6/6" in visible_text(app, progress) and "40/120 blocks" in visible_text(app, progress)
        assert "evaluating" not in visible_text(app, monitor.query_one("#log", RichLog))  # not a log line

        line = {"run": LIVE_ID, "seq": len(history) + 1, "time": 1_700_000_100.0}
        with (folder / "events.jsonl").open("a") as events:
            events.write(json.dumps({**line, **event_to_dict(EvalFinished(6, 2.5, 12.2))}) + "\n")
        await wait_for(pilot, lambda: "evaluating" not in text_of(progress), "the step line back")
        assert text_of(progress).startswith("step 6/6 · ETA")
        assert [e.step for e in monitor.evals] == [0, 6]


async def test_a_replayed_history_shows_no_stale_evaluation_progress(home: Path) -> None:
    from gpt2tui.core.events import EvalProgress

    history = finished_history([(0, 3.0), (6, 2.0)])
    history.insert(1, EvalProgress(0, 5, 9))
    history.insert(-2, EvalProgress(6, 5, 9))
    write_run(home, FINISHED_ID, history)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, app, FINISHED_ID)
        await wait_for(pilot, lambda: len(monitor.evals) == 2, "both evaluations")
        assert text_of(monitor.query_one("#progress-text", Static)).startswith("step 6/6 · ETA")


# ---- renaming a run's model ---------------------------------------------------------------------------


def test_renaming_a_runs_model_takes_its_runs_along(tiny_model: str, home: Path) -> None:
    """The run that wrote a model (or will write it when resumed) names it by its new name: its config (what a
    resume saves to, what its monitor chats with), its status (the run lists) and its name claim."""
    from gpt2tui.core.runs import Run, name_owner

    store = ModelStore()
    store.rename(tiny_model, "hand")
    events: list[TrainingEvent] = [
        started(),
        step(1, 4.0),
        RunFinished("hand", "/m", 1, True, 5.0, 3.0, 148.0, 20.0, 1, 9000.0, 2.0),
    ]
    folder = write_run(home, FINISHED_ID, events, state="stopped")
    (home / "runs" / ".names").mkdir()
    (home / "runs" / ".names" / "hand").write_text(FINISHED_ID)
    store.rename("hand", "renamed")
    run = Run(folder)
    assert run.config()["train"]["name"] == "renamed"
    assert run.summary()["model"] == "renamed"
    assert name_owner("renamed") is not None and name_owner("renamed").id == FINISHED_ID  # type: ignore[union-attr]
    assert name_owner("hand") is None
    assert not (home / "runs" / ".names" / "hand").exists()


def test_a_model_a_live_run_is_training_cannot_be_renamed(tiny_model: str, home: Path) -> None:
    from gpt2tui.core.runs import Run

    store = ModelStore()
    store.rename(tiny_model, "hand")
    folder = write_run(home, LIVE_ID, [started(), step(1, 4.0)], state="running", **live_status())
    (home / "runs" / ".names").mkdir()
    (home / "runs" / ".names" / "hand").write_text(LIVE_ID)
    with pytest.raises(UserError) as refused:
        store.rename("hand", "renamed")
    assert str(refused.value) == (
        f"The run {LIVE_ID} is training the model 'hand'; rename it once the run has ended (or stop it)."
    )
    assert store.exists("hand") and not store.exists("renamed")
    assert Run(folder).config()["train"]["name"] == "hand"


async def test_the_monitor_of_a_renamed_models_run_chats_with_it_by_its_new_name(
    tiny_model: str, home: Path
) -> None:
    from gpt2tui.ui.screens.chat import ChatScreen

    ModelStore().rename(tiny_model, "hand")
    events: list[TrainingEvent] = [
        started(),
        step(1, 4.0),
        RunFinished("hand", "/m", 1, False, 5.0, 3.0, 148.0, 20.0, 1, 9000.0, 2.0),
    ]
    write_run(home, FINISHED_ID, events)
    ModelStore().rename("hand", "renamed")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await open_monitor(pilot, app, FINISHED_ID)
        assert monitor.sub_title == f"run {FINISHED_ID} · renamed"
        assert "Saved as renamed" in visible_text(app, monitor.query_one("#outcome", Static))
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), "the chat")
        assert app.screen.sub_title == "chat with renamed"


async def test_back_from_a_runs_monitor_home_highlights_that_run(home: Path) -> None:
    """A run opened by the app (as the setup screen's start does): back on home, s, r and o act on it, not
    on the row that was highlighted before (s silently stopped nothing: the highlighted run had finished)."""
    newer = "20240105-120000-cccc"
    write_run(home, FINISHED_ID, finished_history([(0, 5.0)]))
    write_run(home, newer, finished_history([(0, 5.0)]))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: runs.row_count == 2, "both runs listed")
        runs.focus()
        runs.move_cursor(row=0)
        assert runs.coordinate_to_cell_key(runs.cursor_coordinate).row_key.value == newer
        app.open_run(FINISHED_ID)
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home")
        await pilot.pause()
        assert runs.coordinate_to_cell_key(runs.cursor_coordinate).row_key.value == FINISHED_ID
        runs.move_cursor(row=0)  # the user moves on; coming back from elsewhere keeps their row
        app.action_chat_with("nothing-here")
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "home again")
        await pilot.pause()
        assert runs.coordinate_to_cell_key(runs.cursor_coordinate).row_key.value == newer
