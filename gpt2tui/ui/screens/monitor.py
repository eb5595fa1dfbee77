"""The run monitor: one run's recorded history, then its live progress, read from the run's folder.

A run is its own process (``core/launch.py``); this screen never trains. It shows whatever the App's run
watcher has read of the run's ``events.jsonl`` (the whole history at once when opened later, even after the
TUI was restarted), then each new batch. ``s`` asks the run to stop (it saves a checkpoint and its model),
``r`` resumes a stopped or failed run, and leaving the screen leaves the run alone.
"""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, ProgressBar, RichLog, Static

from gpt2tui.core.errors import UserError
from gpt2tui.core.events import (
    CheckpointSaved,
    EvalFinished,
    EvalProgress,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopping,
    StepLogged,
    describe,
    device_label,
    eval_when,
    gpu_figures,
    overfitting_since,
)
from gpt2tui.core.runs import RecordedEvent, RunStatus
from gpt2tui.ui.messages import ChatRequested, MonitorClosed, RunResumed
from gpt2tui.ui.runs import resume_error, run_folder, stop_error, updated_at
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.loss_plot import LossPlot
from gpt2tui.ui.wording import failure_in_app

LOG_LINES = 2_000
LIVE_STATES = ("starting", "running", "stopping")
ENDED_STATES = ("stopped", "finished", "failed")
KEEPS_RUNNING = (
    "Run {run} keeps training in the background; open it again from the run list on the home screen "
    "(or `gpt2tui runs attach {run}`)."
)


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class MonitorScreen(Screen[None]):
    """Watches the run ``run_id``; ``state`` is the run's (starting/running/stopping/stopped/finished/failed)."""

    CSS_PATH = "monitor.tcss"
    # Classes for monitor.tcss, which narrows and shortens the panels on small terminals (at 80x24 the
    # progress text, the newest evaluation and the newest log lines must still be whole).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop (saves the model)"),
        Binding("r", "resume", "Resume"),
        Binding("c", "chat", "Chat with it"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run = run_folder(run_id)
        self.state = "starting"
        self.model_name: str | None = None
        self.evals: list[EvalFinished] = []
        self.finished_event: RunFinished | None = None
        self.failure: str | None = None
        self.status: RunStatus | None = None
        self.event_state: str | None = None  # the state the newest event implies
        self.ended_at: float | None = None  # when the newest end event was written
        self.last_seq = 0
        self.total_steps = 0
        self.step_text = ""  # the progress line of the newest step, shown again once an evaluation ends
        self.stop_asked = False
        self.resuming = False
        train = self.read_config()
        self.model_name = train.get("name") if isinstance(train.get("name"), str) else None
        prompt = train.get("sample_prompt")
        self.sample_prompt = prompt if isinstance(prompt, str) else None

    def read_config(self) -> dict[str, object]:
        try:
            train = self.run.config().get("train")
        except UserError:
            return {}
        return train if isinstance(train, dict) else {}

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"Run {self.run_id}: waiting for its first event …"), id="info")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield Static("step 0", id="progress-text")
        yield Static("", id="notice")
        with Horizontal(id="middle"):
            yield LossPlot(id="plot")
            evals: DataTable[Text] = DataTable(id="evals", cursor_type="none", zebra_stripes=True)
            evals.border_title = "held-out evaluation"
            evals.add_column(Text("step", justify="right"), key="step")
            evals.add_column(Text("loss", justify="right"), key="loss")
            evals.add_column(Text("perplexity", justify="right"), key="perplexity")
            yield evals
        with Horizontal(id="bottom"):
            # Long lines wrap at the log's width, never cut: RichLog's default min_width (78) wrapped them at 78
            # columns and then cropped them to the narrower panel, dropping the words in between.
            yield RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False, min_width=20)
            with VerticalScroll(id="sample-box") as sample_box:
                sample_box.border_title = "samples per eval"
                prompt = self.sample_prompt
                heading = f"from the prompt:\n{prompt}" if prompt else "no sample prompt"
                yield Static(Text(heading), classes="section", id="sample-prompt")
        yield Static("", id="outcome")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_id}" + (f" · {self.model_name}" if self.model_name else "")
        self.query_one("#outcome").display = False
        self.query_one("#notice").display = False
        # Anchored: the newest evaluation and log line stay in view as rows arrive and as the outcome banner
        # takes room from them, until the user scrolls up (back at the bottom, following resumes).
        self.query_one("#evals", DataTable).anchor()
        self.query_one("#log", RichLog).anchor()
        book = getattr(self.app, "run_book", None)
        if book is not None:
            self.add_events(book.events(self.run_id))
            status = book.statuses.get(self.run_id)
        else:
            status = None
        self.status_changed(status or self.run.status())

    # ------------------------------------------------------------------------------------- what the run wrote

    def add_events(self, events: list[RecordedEvent]) -> None:
        """Draw a batch of recorded events: steps in one update per widget, the rest in order.

        Evaluation progress is drawn only when it is the batch's newest news (an evaluation still running),
        so a history replay does not redraw the line for every one of them.
        """
        steps: list[StepLogged] = []
        progress: EvalProgress | None = None
        for recorded in events:
            if recorded.seq and recorded.seq <= self.last_seq:
                continue  # already drawn (the history and a batch may overlap by a poll)
            self.last_seq = max(self.last_seq, recorded.seq)
            event = recorded.event
            if isinstance(event, EvalProgress):
                progress = event
                continue
            progress = None
            if isinstance(event, StepLogged):
                steps.append(event)
                self.event_state = "running"
                continue
            if steps:
                self.steps_logged(steps)
                steps = []
            self.other_event(recorded)
        if steps:
            self.steps_logged(steps)
        if progress is not None:
            self.eval_progress(progress)
        if events:
            self.update_state()

    def other_event(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        log = self.query_one("#log", RichLog)
        if isinstance(event, RunStarted):
            self.started(event)
            self.event_state = "running"
            self.ended_at = None
            self.finished_event = None
            self.failure = None
        elif isinstance(event, EvalFinished):
            self.eval_finished(event)
            self.event_state = "running"
        elif isinstance(event, CheckpointSaved):
            log.write(describe(event))
        elif isinstance(event, RunStopping):
            log.write(describe(event))
            self.event_state = "stopping"
        elif isinstance(event, RunFinished):
            log.write(describe(event))
            self.finished_event = event
            self.model_name = self.model_name or event.name  # the config's: it follows a rename
            self.event_state = "stopped" if event.stopped else "finished"
            self.ended_at = recorded.time
            self.query_one("#progress", ProgressBar).update(progress=event.steps)
        elif isinstance(event, RunFailed):
            log.write(describe(event))
            self.failure = event.message
            self.event_state = "failed"
            self.ended_at = recorded.time

    def started(self, event: RunStarted) -> None:
        self.model_name = self.model_name or event.name  # the config's: it follows a rename
        self.sub_title = f"run {self.run_id} · {self.model_name}"
        limit = "max steps" if event.step_limit == "max_steps" else "epochs"
        self.query_one("#info", Static).update(
            Text.from_markup(
                f"[b]{escape(event.name)}[/b] · base {escape(event.base)} · {event.parameters:,} parameters"
                f" · {escape(device_label(event))} · {event.train_blocks} train /"
                f" {event.eval_blocks} eval blocks of {event.block_size} tokens ·"
                f" {event.tokens_per_step:,} tokens/step · length by {limit}"
            )
        )
        self.query_one("#progress", ProgressBar).update(total=event.total_steps, progress=event.resumed_from)
        self.total_steps = event.total_steps
        self.query_one(LossPlot).set_total(event.total_steps)
        self.step_text = f"step {event.resumed_from}/{event.total_steps} · " + (
            f"resumed from step {event.resumed_from}" if event.resumed_from else "training …"
        )
        self.query_one("#progress-text", Static).update(
            self.step_text
            if event.resumed_from
            else f"step 0/{event.total_steps} · evaluating before training …"
        )
        log = self.query_one("#log", RichLog)
        log.write(describe(event))

    def steps_logged(self, steps: list[StepLogged]) -> None:
        event = steps[-1]
        self.query_one("#progress", ProgressBar).update(total=event.total_steps, progress=event.step)
        self.total_steps = event.total_steps
        self.step_text = (
            f"step {event.step}/{event.total_steps} · ETA {format_duration(event.eta_seconds)}"
            f" · {event.tokens_per_second:,.0f} tok/s{gpu_figures(event, ' · ')} · epoch {event.epoch:.2f}"
        )
        self.query_one("#progress-text", Static).update(self.step_text)
        log = self.query_one("#log", RichLog)
        for step in steps:
            log.write(  # short enough for half of an 80-column terminal; tok/s is in the progress text
                f"step {step.step:>5}/{step.total_steps}  loss {step.loss:.4f}  lr {step.learning_rate:.1e}"
                f"  {format_duration(step.elapsed_seconds)}"
            )
        plot = self.query_one(LossPlot)
        plot.set_total(event.total_steps)
        plot.add(*(step.loss for step in steps), steps=[step.step for step in steps])

    def eval_progress(self, event: EvalProgress) -> None:
        """An evaluation is under way: say how far it is, in place of the step line, until it ends."""
        self.query_one("#progress-text", Static).update(
            f"step {event.step}/{self.total_steps} · evaluating {eval_when(event.step)}: "
            f"{event.blocks_done}/{event.blocks_total} blocks ({event.fraction:.0%})"
        )

    def eval_finished(self, event: EvalFinished) -> None:
        self.evals.append(event)
        if self.step_text:
            self.query_one("#progress-text", Static).update(self.step_text)
        self.query_one("#evals", DataTable).add_row(
            Text("before" if event.step == 0 else str(event.step), justify="right"),
            Text(f"{event.loss:.4f}", justify="right"),
            Text(f"{event.perplexity:,.2f}", justify="right"),
        )
        self.query_one("#log", RichLog).write(
            f"eval at step {event.step}: loss {event.loss:.4f}, perplexity {event.perplexity:,.2f}"
        )
        self.query_one(LossPlot).add_eval(event.step, event.loss)
        if event.sample is not None:
            self.add_sample(event)
        self.show_eval_health()

    def add_sample(self, event: EvalFinished) -> None:
        """Each evaluation's sample under the earlier ones (the box scrolls), so the run's progress in words
        can be read back, not only the newest sample."""
        label = "before training" if event.step == 0 else f"after step {event.step}"
        box = self.query_one("#sample-box", VerticalScroll)
        following = box.scroll_y >= box.max_scroll_y  # not scrolled up by the user: keep the newest in view
        box.mount(Static(Text.assemble((f"{label}:", "dim"), "\n", event.sample or ""), classes="sample"))
        if following:  # not anchor(): that would also push a short history to the bottom of the box
            box.call_after_refresh(box.scroll_end, animate=False)

    def best_eval(self) -> tuple[int, float] | None:
        """The step and loss of the lowest held-out loss so far (the run's own record when it gives one)."""
        if not self.evals:
            return None
        newest = self.evals[-1]
        if newest.best_step is not None and newest.best_loss is not None:
            return newest.best_step, newest.best_loss
        best = min(self.evals, key=lambda e: e.loss)
        return best.step, best.loss

    def overfitting_step(self) -> int | None:
        return overfitting_since([(e.step, e.loss) for e in self.evals])

    def show_eval_health(self) -> None:
        """The best evaluation on the table's border; a warning line once held-out loss rose twice in a row."""
        best = self.best_eval()
        evals = self.query_one("#evals", DataTable)
        evals.border_subtitle = f"best: step {best[0]} ({best[1]:.4f})" if best else None
        since = self.overfitting_step()
        notice = self.query_one("#notice", Static)
        notice.display = since is not None
        if since is not None:
            notice.update(f"Overfitting since step {since}: held-out loss rose at the last two evaluations.")

    # ------------------------------------------------------------------------------------------ its state

    def status_changed(self, status: RunStatus | None) -> None:
        """The watcher's newest status for this run (None: the run folder is gone)."""
        if status is None:
            self.status = None
            self.show_outcome(f"Run {self.run_id} was removed.", error=True)
            self.state = "removed"
            self.refresh_bindings()
            return
        self.status = status
        self.update_state()

    def update_state(self) -> None:
        """Combine what the events say with the status; a status older than the run's end event is stale."""
        status = self.status
        state = self.event_state or "starting"
        if status is not None:
            stale = (
                status.live
                and self.ended_at is not None
                and (updated_at(status) or 0) <= self.ended_at
                and self.event_state in ENDED_STATES
            )
            if not stale:
                state = status.state
                if status.live and self.event_state in ENDED_STATES:
                    self.failure = None  # resumed: a new process, whose own end is yet to come
                elif status.live and self.event_state in LIVE_STATES:
                    state = self.event_state  # both say live; the events are the fresher of the two
            if status.state == "failed" and not self.failure:
                self.failure = status.message
        if state != self.state or state in ENDED_STATES or self.stop_asked:
            self.state = state
            if state not in LIVE_STATES:
                self.stop_asked = False
            self.show_state()
            self.refresh_bindings()

    def show_state(self) -> None:
        state = self.state
        if state == "stopping" or (self.stop_asked and state in LIVE_STATES):
            self.show_outcome(
                "Stopping: the run saves a checkpoint and its model, then ends. It is its own process, so "
                "leaving this screen or gpt2tui does not interrupt the save.",
                error=False,
            )
        elif state in ("finished", "stopped"):
            self.show_outcome(self.saved_text(), error=False)
        elif state == "failed":
            message = failure_in_app(self.failure or "the run ended with an error.", self.run_id)
            self.show_outcome(
                f"The run failed: {escape(message)}  Press [b]r[/b] to resume it from its last checkpoint, "
                "[b]escape[/b] to go back.",
                error=True,
            )
        elif self.resuming:
            self.show_outcome("Resuming: the run starts again from its newest checkpoint …", error=False)
        else:
            self.query_one("#outcome").display = False

    def saved_text(self) -> str:
        event = self.finished_event
        name = escape(self.model_name or (self.status.model if self.status else None) or "the model")
        keys = "Press [b]c[/b] to chat with it, [b]escape[/b] for the model list."
        if event is None:
            return f"Saved as [b]{name}[/b].  {keys}"
        how = f"stopped early after {event.steps} steps" if event.stopped else f"{event.steps} steps"
        weights = f", weights of step {event.weights_step} (best eval)" if event.weights == "best" else ""
        resume = "  [b]r[/b] resumes training." if event.stopped else ""
        return (
            f"Saved as [b]{name}[/b] ({how}, {format_duration(event.seconds)}{weights}) · perplexity"
            f" {event.perplexity_before:,.1f} → {event.perplexity_after:,.1f}.  {keys}{resume}"
        )

    def show_outcome(self, text: str, error: bool) -> None:
        outcome = self.query_one("#outcome", Static)
        outcome.update(text)
        outcome.set_class(error, "error")
        outcome.display = True

    # ------------------------------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.state in ("starting", "running") and not self.stop_asked
        if action == "resume":
            return self.state in ("stopped", "failed") and not self.resuming
        if action == "chat":
            return self.state in ("finished", "stopped") and self.model_name is not None
        return True

    def action_stop(self) -> None:
        """SIGTERM to the run's process: it saves a checkpoint and its model, then exits."""
        error = stop_error(self.run_id)
        if error is not None:
            self.notify(error, severity="error", markup=False)
            return
        self.stop_asked = True
        self.show_state()
        self.refresh_bindings()
        self.poll_runs()

    def action_resume(self) -> None:
        self.resuming = True
        self.refresh_bindings()
        self.show_outcome("Resuming: checking the dataset and starting the run again …", error=False)
        self.resume_run()

    @work(thread=True, group="resume", exit_on_error=False)
    def resume_run(self) -> None:
        """In a thread: the check hashes the dataset file."""
        self.post_message(RunResumed(self.run_id, resume_error(self.run_id)))

    @on(RunResumed)
    def resumed(self, message: RunResumed) -> None:
        message.stop()
        self.resuming = False
        if message.error is not None:
            self.show_outcome(escape(message.error), error=True)
            self.refresh_bindings()
            return
        self.notify(f"Run {self.run_id} is training again.")
        self.poll_runs()

    def poll_runs(self) -> None:
        watcher = getattr(self.app, "run_watcher", None)
        if watcher is not None:
            watcher.poll_now()

    def action_chat(self) -> None:
        if self.model_name is not None:
            self.post_message(ChatRequested(self.model_name))

    def action_back(self) -> None:
        """Leave; the run goes on (it is its own process), and the App decides where to."""
        if self.live:
            self.notify(KEEPS_RUNNING.format(run=self.run_id), markup=False)
        self.post_message(MonitorClosed(self.run_id, self.state))
