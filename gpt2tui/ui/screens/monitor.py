"""The run monitor: ``core.training.train`` in a thread, its events drawn as they arrive, one key to stop."""

from __future__ import annotations

import threading
from collections import deque
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, RichLog, Static

from gpt2tui.core.errors import UserError
from gpt2tui.core.events import EvalFinished, RunFailed, RunFinished, RunStarted, StepLogged
from gpt2tui.core.training import TrainConfig
from gpt2tui.ui.messages import RunEventReceived
from gpt2tui.ui.widgets.loss_plot import LossPlot

LOG_LINES = 2_000
FLUSH_SECONDS = 0.1
"""Step events are drawn in batches at most this often, so a fast run's UI work stays bounded and the
training thread is not slowed by redraws (a tiny model can log hundreds of steps a second)."""


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class MonitorScreen(Screen[None]):
    """Runs one fine-tune; ``state`` is preparing → running → (stopping →) finished | failed."""

    CSS_PATH = "monitor.tcss"
    # Classes for monitor.tcss, which narrows and shortens the panels on small terminals (at 80x24 the
    # progress text, the newest evaluation and the newest log lines must still be whole).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop (saves the model)"),
        Binding("c", "chat", "Chat with it"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.stop_event = threading.Event()
        self.state = "running"
        self.model_name: str | None = None
        self.after_run: str | None = None  # "leave" or "exit": what to do once the stopped run has saved
        self.evals: list[EvalFinished] = []
        self._steps: deque[StepLogged] = deque()  # filled by the training thread, drained by a timer

    @property
    def in_progress(self) -> bool:
        return self.state in ("running", "stopping")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"Preparing {self.config.name or 'the run'}: loading the data and the base model …", id="info"
        )
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield Static("step 0", id="progress-text")
        with Horizontal(id="middle"):
            yield LossPlot(id="plot")
            evals: DataTable[Text] = DataTable(id="evals", cursor_type="none", zebra_stripes=True)
            evals.border_title = "held-out evaluation"
            evals.add_column(Text("step", justify="right"), key="step")
            evals.add_column(Text("loss", justify="right"), key="loss")
            evals.add_column(Text("perplexity", justify="right"), key="perplexity")
            yield evals
        with Horizontal(id="bottom"):
            yield RichLog(id="log", max_lines=LOG_LINES, wrap=False, markup=False)
            with VerticalScroll(id="sample-box") as sample_box:
                sample_box.border_title = "sample per eval"
                prompt = self.config.sample_prompt
                heading = f"from the prompt:\n{prompt}" if prompt else "no sample prompt"
                yield Static(Text(heading), classes="section", id="sample-prompt")
                yield Static("", id="sample")
        yield Static("", id="outcome")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"new fine-tune · 3/3 training {self.config.name or ''}".rstrip()
        self.query_one("#outcome").display = False
        # Anchored: the newest evaluation and log line stay in view as rows arrive and as the outcome banner
        # takes room from them, until the user scrolls up (back at the bottom, following resumes).
        self.query_one("#evals", DataTable).anchor()
        self.query_one("#log", RichLog).anchor()
        self.set_interval(FLUSH_SECONDS, self.flush_steps)
        self.run_training()

    # ------------------------------------------------------------------------------------------ the worker

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def run_training(self) -> None:
        """The core does the work; every event (including a failure) reaches the UI as a message."""
        from gpt2tui.core.training import train
        from gpt2tui.ui.libraries import ensure_libraries

        def forward(event: object) -> None:
            if isinstance(event, StepLogged):
                self._steps.append(event)  # drawn in batches by flush_steps
            else:
                self.post_message(RunEventReceived(event))  # type: ignore[arg-type]

        try:
            ensure_libraries()
            train(self.config, on_event=forward, stop=self.stop_event)
        except UserError:
            pass  # train() has already emitted RunFailed with the same sentence
        except BaseException as err:  # whatever happens, the screen must say it, not crash
            forward(RunFailed(f"Training failed: {type(err).__name__}: {err}"))

    @on(RunEventReceived)
    def run_event(self, message: RunEventReceived) -> None:
        self.flush_steps()  # steps logged before this event are drawn first, keeping the order
        event = message.event
        if isinstance(event, RunStarted):
            self.started(event)
        elif isinstance(event, StepLogged):
            self.steps_logged([event])
        elif isinstance(event, EvalFinished):
            self.eval_finished(event)
        elif isinstance(event, RunFinished):
            self.finished(event)
        elif isinstance(event, RunFailed):
            self.failed(event)

    def started(self, event: RunStarted) -> None:
        self.model_name = event.name
        self.query_one("#info", Static).update(
            f"[b]{event.name}[/b] · base {event.base} · {event.parameters:,} parameters · {event.device}"
            f" ({event.mixed_precision}) · {event.train_blocks} train / {event.eval_blocks} eval blocks of"
            f" {event.block_size} tokens · {event.tokens_per_step:,} tokens/step"
        )
        self.query_one("#progress", ProgressBar).update(total=event.total_steps, progress=0)
        self.query_one("#progress-text", Static).update(
            f"step 0/{event.total_steps} · evaluating before training …"
        )

    def flush_steps(self) -> None:
        """Draw every step logged since the last flush with one update per widget."""
        steps = []
        while self._steps:
            steps.append(self._steps.popleft())
        if steps:
            self.steps_logged(steps)

    def steps_logged(self, steps: list[StepLogged]) -> None:
        event = steps[-1]
        self.query_one("#progress", ProgressBar).update(total=event.total_steps, progress=event.step)
        self.query_one("#progress-text", Static).update(
            f"step {event.step}/{event.total_steps} · ETA {format_duration(event.eta_seconds)}"
            f" · {event.tokens_per_second:,.0f} tok/s · epoch {event.epoch:.2f}"
        )
        log = self.query_one("#log", RichLog)
        for step in steps:
            log.write(  # short enough for half of an 80-column terminal; tok/s is in the progress text
                f"step {step.step:>5}/{step.total_steps}  loss {step.loss:.4f}  lr {step.learning_rate:.1e}"
                f"  {format_duration(step.elapsed_seconds)}"
            )
        self.query_one(LossPlot).add(*(step.loss for step in steps))

    def eval_finished(self, event: EvalFinished) -> None:
        self.evals.append(event)
        self.query_one("#evals", DataTable).add_row(
            Text("before" if event.step == 0 else str(event.step), justify="right"),
            Text(f"{event.loss:.4f}", justify="right"),
            Text(f"{event.perplexity:,.2f}", justify="right"),
        )
        self.query_one("#log", RichLog).write(
            f"eval at step {event.step}: loss {event.loss:.4f}, perplexity {event.perplexity:,.2f}"
        )
        if event.sample is not None:
            label = "before training" if event.step == 0 else f"after step {event.step}"
            self.query_one("#sample", Static).update(f"[dim]{label}:[/dim]\n{escape_markup(event.sample)}")

    def finished(self, event: RunFinished) -> None:
        self.state = "finished"
        self.model_name = event.name
        how = f"stopped early after {event.steps} steps" if event.stopped else f"{event.steps} steps"
        self.show_outcome(
            f"Saved as [b]{event.name}[/b] ({how}, {format_duration(event.seconds)}) · perplexity"
            f" {event.perplexity_before:,.1f} → {event.perplexity_after:,.1f}.  "
            "Press [b]c[/b] to chat with it, [b]escape[/b] for the model list.",
            error=False,
        )
        self.query_one("#progress", ProgressBar).update(progress=event.steps)
        self.run_ended()

    def failed(self, event: RunFailed) -> None:
        self.state = "failed"
        self.show_outcome(
            f"The run failed: {escape_markup(event.message)}  Press escape to change the setup.", error=True
        )
        self.run_ended()

    def run_ended(self) -> None:
        self.refresh_bindings()
        if self.after_run == "exit":
            self.app.exit()
        elif self.after_run == "leave":
            self.leave()

    def show_outcome(self, text: str, error: bool) -> None:
        outcome = self.query_one("#outcome", Static)
        outcome.update(text)
        outcome.set_class(error, "error")
        outcome.display = True

    # ------------------------------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.state == "running"
        if action == "chat":
            return self.state == "finished"
        return True

    def stop_run(self, after: str | None = None) -> None:
        """Ask the core to end at the next step; it still evaluates and saves the model."""
        if after is not None:
            self.after_run = after
        if self.state != "running":
            return
        self.stop_event.set()
        self.state = "stopping"
        then = " before quitting" if self.after_run == "exit" else ""
        self.show_outcome(
            f"Stopping at the next step; the model trained so far is being saved{then} …", error=False
        )
        self.refresh_bindings()

    def action_stop(self) -> None:
        self.stop_run()

    def action_chat(self) -> None:
        if self.state == "finished" and self.model_name:
            from gpt2tui.ui.screens.home import open_chat

            open_chat(self, self.model_name)

    def action_back(self) -> None:
        if not self.in_progress:
            self.leave()
            return
        from gpt2tui.ui.screens.dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if self.in_progress:
                self.stop_run(after="leave")
            else:  # the run ended while the question was open: nothing left to stop
                self.leave()

        question = "The run is still going. Stop it and go back? The model trained so far is saved first."
        self.app.push_screen(
            ConfirmDialog(question, yes_label="Stop and go back", no_label="Keep training"), answered
        )

    def leave(self) -> None:
        """After a saved model, back to the model list; after a failure, back to the setup to change it."""
        if self.state == "failed":
            self.dismiss()
            return
        from gpt2tui.ui.screens.home import HomeScreen

        while len(self.app.screen_stack) > 1 and not isinstance(self.app.screen, HomeScreen):
            self.app.pop_screen()


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)
