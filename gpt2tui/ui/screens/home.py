"""Home: the stored models and the runs, each table with its own keys.

The models table chats with, renames, deletes and pushes models to the Hugging Face Hub (broken folders are
listed last, marked, and can only be deleted; a run stopped early is marked); under it, what to expect of the
highlighted model (stopped early, gibberish at a tiny size), its stored evaluations and the state of the last
push. The runs table lists every run folder, whoever started it (this TUI, the CLI, a TUI
before a restart): open its monitor, stop it, resume it, or remove a run that has ended. Requests to open
another screen are messages; the App does the navigation.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Header, Static

from gpt2tui.core.card import EvaluationRecord, stopped_note
from gpt2tui.core.errors import UserError
from gpt2tui.core.runs import RunStatus
from gpt2tui.core.store import ModelInfo, ModelStore
from gpt2tui.ui.expectations import expectations
from gpt2tui.ui.messages import ChatRequested, ModelPushed, NewFinetuneRequested, RunOpened, RunResumed
from gpt2tui.ui.runs import resume_error, run_folder, stop_error
from gpt2tui.ui.samples import FIRST_SAMPLE, sample_files
from gpt2tui.ui.widgets.dialogs import (
    ConfirmDialog,
    NameDialog,
    PushDialog,
    PushTarget,
    os_error_sentence,
)
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.wording import Advice, count_of_rows, failure_in_app

EMPTY_INTRO = """\
[b]No fine-tuned models yet.[/b]

gpt2tui fine-tunes GPT-2 on a text, CSV or JSON-lines file and lets you chat with the result.
To try it in about a minute on this machine:"""
EMPTY_STEPS = (
    "press [b]n[/b] (new fine-tune)",
    "{pick} and press [b]ctrl+n[/b]",
    "keep the base [b]scratch[/b], size [b]tiny[/b], and press [b]ctrl+s[/b] to start training",
    "when the run ends, press [b]c[/b] to chat with your model",
)
EMPTY_OUTRO = (
    "Your models are listed here afterwards; [b]?[/b] or [b]F1[/b] shows the keys, ctrl+p the command palette, "
    "ctrl+q quits."
)
PICK_SAMPLE = (
    "press [b]enter[/b] on [b]qa.csv[/b] (highlighted; 68 questions and answers about the solar system)"
)
PICK_ANY = "pick a .txt, .csv or .jsonl file of your own (browse on the left, or ctrl+l to type its path)"
NO_MODELS = "There are no stored models yet; press n to fine-tune one."
NO_RUNS = "There are no runs yet; press n to start one."
PUBLIC_HINT = "press p again and choose public"
"""Completes the core's refusal of an existing public repository the way this screen asks for public."""
RENAME_ADVICE: Advice = {
    "name_taken": "choose another name, or delete that model first (d)",
    "name_claimed": "choose another name",
}
"""How the rename dialog fixes the core's refusals that name a CLI option (``gpt2tui.ui.wording``)."""


def empty_steps(start_dir: Path | None) -> list[str]:
    """The first-start walkthrough; it names the sample file only when the dataset picker will list it."""
    listed = any(path.name == FIRST_SAMPLE for path in sample_files(start_dir))
    return [step.format(pick=PICK_SAMPLE if listed else PICK_ANY) for step in EMPTY_STEPS]


def describe_name(info: ModelInfo) -> Text:
    """The name, marked when its run was stopped early (the details line under the list says at which step)."""
    name = Text(info.name)
    if stopped_note(info.metadata):
        name.append(" (stopped)", style="yellow")
    return name


def perplexity_change(info: ModelInfo) -> str:
    """``before → after`` with one decimal, or a dash when the metadata lacks it."""
    before, after = info.metadata.perplexity_before, info.metadata.perplexity_after
    if before is None or after is None:
        return "-"
    return f"{before:,.1f} → {after:,.1f}"


def describe_base(info: ModelInfo) -> str:
    base = info.metadata.base or "?"
    size = info.metadata.scratch_size
    return f"{base} ({size})" if base == "scratch" and size else base


def describe_dataset(info: ModelInfo) -> str:
    dataset = info.metadata.dataset
    if not dataset.path:
        return "-"
    name = Path(dataset.path).name
    return f"{name} ({count_of_rows(dataset.format, dataset.rows)})" if dataset.rows is not None else name


def describe_date(info: ModelInfo) -> str:
    created = info.metadata.created_at
    return created.strftime("%Y-%m-%d %H:%M") if created else "-"


EVALUATION_FIGURES: tuple[tuple[str, str, int], ...] = (
    # (EvaluationRecord field, label, decimals): the generation figures, in the card's order
    ("distinct_1", "distinct-1", 3),
    ("distinct_2", "distinct-2", 3),
    ("repeated_4gram_rate", "repeated 4-grams", 3),
    ("mean_reply_tokens", "mean length", 1),
    ("mean_token_logprob", "mean token log-prob", 3),
    ("reply_perplexity", "reply perplexity", 2),
    ("rouge_l", "ROUGE-L", 3),
    ("token_f1", "token F1", 3),
)


def latest_evaluation(info: ModelInfo) -> str:
    """The newest stored evaluation's perplexity and file, or a dash when there is none."""
    if not info.metadata.evaluations:
        return "-"
    record = info.metadata.evaluations[-1]
    figure = f"{record.perplexity:,.2f}" if record.perplexity is not None else "?"
    return f"{figure} ({record.dataset or '?'})"


def describe_evaluation(record: EvaluationRecord) -> str:
    """One evaluation in a line or two: when, on what, loss and perplexity, then any reply figures."""
    try:
        when = datetime.fromisoformat(record.created or "").astimezone().strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        when = "?"
    loss = f"{record.loss:.4f}" if record.loss is not None else "?"
    perplexity = f"{record.perplexity:,.2f}" if record.perplexity is not None else "?"
    text = f"{when} on {record.dataset or '?'} ({record.blocks} blocks): loss {loss}, perplexity {perplexity}"
    figures = [
        f"{label} {value:.{digits}f}"
        for attr, label, digits in EVALUATION_FIGURES
        if (value := getattr(record, attr)) is not None
    ]
    if figures:
        text += f"\n{record.replies} replies: " + ", ".join(figures)
    return text


def evaluation_details(info: ModelInfo) -> str:
    """What the home screen says under the models about the highlighted model's stored evaluations."""
    records = info.metadata.evaluations
    if not records:
        return f"{info.name}: no stored evaluations; 'gpt2tui eval {info.name} FILE' measures one."
    earlier = f" ({len(records) - 1} earlier: 'gpt2tui models show {info.name}')" if len(records) > 1 else ""
    return f"{info.name}, latest evaluation{earlier}: {describe_evaluation(records[-1])}"


def expectation_details(info: ModelInfo) -> str | None:
    """What to expect of the highlighted model (stopped early, gibberish at its size), or None."""
    notes = expectations(info.metadata)
    if not notes:
        return None
    return f"{info.name}: {'; '.join(notes)}."


def describe_updated(status: RunStatus) -> str:
    """Local time of the last status write: the time alone today, with the date otherwise."""
    try:
        when = datetime.fromisoformat(status.updated or "").astimezone()
    except ValueError:
        return "-"
    today = datetime.now().astimezone().date()
    return when.strftime("%H:%M:%S") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")


def run_row(run_id: str, status: RunStatus) -> tuple[str, Text, str, str, str, str]:
    steps = f"{status.step}/{status.total_steps}" if status.total_steps else str(status.step or "-")
    loss = f"{status.last_eval_loss:.4f}" if status.last_eval_loss is not None else "-"
    style = {"failed": "bold red", "running": "bold green", "stopping": "yellow", "starting": "green"}
    return (
        run_id,
        Text(status.state, style=style.get(status.state, "")),
        steps,
        status.model or "-",
        loss,
        describe_updated(status),
    )


RUN_COLUMNS = ("run", "state", "step", "model", "eval loss", "updated")


class ModelTable(DataTable[str]):
    """The stored models; its keys act on the highlighted model."""

    KEY_MAP_PLACE = "models list"  # where its keys work, in the key map

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "screen.chat", "Chat", tooltip="Chat with the highlighted model (or enter)"),
        Binding("r", "screen.rename", "Rename", tooltip="Rename the highlighted model"),
        Binding("d", "screen.delete", "Delete", tooltip="Delete the highlighted model (asks first)"),
        Binding(
            "p", "screen.push", "Push to Hub", tooltip="Push the highlighted model to the Hugging Face Hub"
        ),
    ]


class RunTable(DataTable[str]):
    """The runs; its keys act on the highlighted run."""

    KEY_MAP_PLACE = "runs list"  # where its keys work, in the key map

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "screen.open_run", "Open", tooltip="Open the highlighted run's monitor (or enter)"),
        Binding(
            "s",
            "screen.stop_run",
            "Stop",
            tooltip="Stop the highlighted run (it saves a checkpoint and its model)",
        ),
        Binding(
            "r",
            "screen.resume_run",
            "Resume",
            tooltip="Resume the highlighted run from its newest checkpoint",
        ),
        Binding(
            "d",
            "screen.remove_run",
            "Remove",
            tooltip="Remove the highlighted run's folder (asks first; its model stays)",
        ),
    ]


class HomeScreen(Screen[None]):
    """The model list above the run list; both are refreshed when the screen comes back."""

    CSS_PATH = "home.tcss"
    AUTO_FOCUS = ""  # focus_a_table decides (None would mean the app's "*": the first table, even hidden)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_finetune", "New fine-tune", tooltip="New fine-tune: pick a dataset, set up, start"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.models: list[ModelInfo] = []
        self.statuses: dict[str, RunStatus] = {}
        self.resuming: set[str] = set()
        self.pushing: tuple[str, PushTarget, float] | None = None  # the model being pushed, where, since when
        self.push_timer: Timer | None = None  # redraws the elapsed time of a push
        self.push_targets: dict[str, PushTarget] = {}  # per model, the last target asked for (this session)
        self.hub_owner: str | None = None  # the owner of the last repository pushed to (this session)
        self._shown = False
        self.wanted_run: str | None = None  # to highlight once listed: the run whose monitor was just left

    def compose(self) -> ComposeResult:
        # Each part is shown or hidden from the start as the lists make it, so the first frame is the settled
        # one: a part hidden after mounting would cost a layout, a focus move and a footer rebuild, each
        # waiting for the next frame.
        self.models = ModelStore().list(include_broken=True)
        book = getattr(self.app, "run_book", None)
        has_runs = bool(book.statuses) if book is not None else False
        yield Header()
        with Vertical(id="empty") as empty:
            empty.display = not self.models
            yield Static(EMPTY_INTRO, id="empty-intro")
            for number, step in enumerate(empty_steps(getattr(self.app, "start_dir", None)), start=1):
                with Horizontal(classes="step"):
                    yield Static(f"{number}.", classes="step-number")
                    yield Static(step, classes="step-text")  # wraps under itself, not under the number
            yield Static(EMPTY_OUTRO, id="empty-outro")
        models = ModelTable(id="models", cursor_type="row", zebra_stripes=True)
        models.border_title = "models"
        # The perplexity comes second, so an 80-column terminal shows it without scrolling the table.
        models.add_columns("name", "perplexity before → after", "base", "dataset", "date", "latest eval")
        models.display = bool(self.models)
        yield models
        for note in ("model-expectations", "model-details", "push-note"):
            yield Static("", id=note).set_styles(display="none")
        runs = RunTable(id="runs", cursor_type="row", zebra_stripes=True)
        runs.border_title = "runs"
        for column in RUN_COLUMNS:
            runs.add_column(column, key=column)
        runs.display = has_runs
        yield runs
        yield Static("", id="run-note").set_styles(display="none")

    async def on_mount(self) -> None:
        self.sub_title = "models and runs"
        book = getattr(self.app, "run_book", None)
        self.fill_models(self.models)
        self.runs_changed(book.statuses if book is not None else {})
        # The footer composes its keys now that a table has the focus: its keys are in the first frame.
        await self.mount(Footer())
        # The app passes the run watcher's news only to mounted screens, and this one is not mounted until
        # this method returns: news that came during the await is in the book (a finished run, whose
        # status never changes again, was otherwise never listed).
        if book is not None and book.statuses != self.statuses:
            self.runs_changed(book.statuses)

    def on_screen_resume(self) -> None:
        if not self._shown:  # the first resume follows the mount, which has just filled both tables
            self._shown = True
            return
        self.refresh_models()
        # Back from a run's monitor (a run just started, or one opened from here): its row is highlighted,
        # so that s, r and o act on the run the user was watching, not on the row highlighted before.
        take = getattr(self.app, "take_last_run_shown", None)
        self.wanted_run = take() if take is not None else None
        book = getattr(self.app, "run_book", None)
        if book is not None:
            self.runs_changed(book.statuses)

    # ------------------------------------------------------------------------------------------ models

    def refresh_models(self, select: str | None = None) -> None:
        """Reload the store into the table, keeping the cursor on ``select`` (or the current row)."""
        self.fill_models(ModelStore().list(include_broken=True), select)

    def fill_models(self, models: list[ModelInfo], select: str | None = None) -> None:
        """Show ``models`` in the table, keeping the cursor on ``select`` (or the current row)."""
        table = self.query_one("#models", ModelTable)
        keep = select or self.selected_name()
        table.clear()
        self.models = models
        for info in self.models:
            if info.broken:
                table.add_row(
                    Text(info.name, style="red"),
                    Text(f"broken: {info.broken}", style="red"),
                    "-",
                    "-",
                    "-",
                    "-",
                    key=info.name,
                )
                continue
            table.add_row(
                describe_name(info),
                perplexity_change(info),
                describe_base(info),
                describe_dataset(info),
                describe_date(info),
                latest_evaluation(info),
                key=info.name,
            )
        self.query_one("#empty").display = not self.models
        table.display = bool(self.models)
        if self.models:
            names = [info.name for info in self.models]
            table.move_cursor(row=names.index(keep) if keep in names else 0)
        self.show_model_details()
        self.focus_a_table()

    def focus_a_table(self) -> None:
        models, runs = self.query_one("#models", ModelTable), self.query_one("#runs", RunTable)
        if self.focused in (models, runs) and self.focused.display:
            return
        if models.display:  # at once (a widget's focus() waits for the app's queue): see on_mount
            self.set_focus(models)
        elif runs.display:
            self.set_focus(runs)
        else:
            self.set_focus(None)  # nothing to act on: no table keys in the footer

    def selected_name(self) -> str | None:
        return selected_key(self.query_one("#models", ModelTable))

    def selected_model(self) -> ModelInfo | None:
        """The highlighted model, or None (said) when there is none or it is broken."""
        name = self.selected_name()
        if name is None:
            self.notify(NO_MODELS, severity="warning")
            return None
        info = next((i for i in self.models if i.name == name), None)
        if info is not None and info.broken:
            self.notify(
                f"The model folder '{name}' is broken ({info.broken}); it can only be deleted (d).",
                severity="warning",
                markup=False,
            )
            return None
        return info

    @on(DataTable.RowSelected, "#models")
    def model_selected(self) -> None:
        self.action_chat()

    @on(DataTable.RowHighlighted, "#models")
    def show_model_details(self) -> None:
        """Under the models: what to expect of the highlighted model, and its stored evaluations (none for a
        broken folder)."""
        details = self.query_one("#model-details", Static)
        expected = self.query_one("#model-expectations", Static)
        name = self.selected_name()
        info = next((i for i in self.models if i.name == name), None)
        usable = info is not None and not info.broken
        details.display = usable
        note = expectation_details(info) if usable and info is not None else None
        expected.display = note is not None
        if note is not None:
            expected.update(Text(note))
        if usable and info is not None:
            details.update(Text(evaluation_details(info)))

    def action_new_finetune(self) -> None:
        self.post_message(NewFinetuneRequested())

    def action_chat(self) -> None:
        info = self.selected_model()
        if info is not None:
            self.post_message(ChatRequested(info.name))

    def action_rename(self) -> None:
        info = self.selected_model()
        if info is None:
            return
        name = info.name

        def apply(new: str) -> None:
            ModelStore().rename(name, new)

        def renamed(new: str | None) -> None:
            if new:
                self.refresh_models(select=new)
                self.notify(f"Renamed {name} to {new}.")

        dialog = NameDialog(f"Rename '{name}' to:", name, apply, doing=f"rename {name}", advice=RENAME_ADVICE)
        self.app.push_screen(dialog, renamed)

    def action_delete(self) -> None:
        name = self.selected_name()
        if name is None:
            self.notify(NO_MODELS, severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                ModelStore().delete(name)
            except UserError as err:
                self.notify(str(err), severity="error", markup=False)
            except OSError as err:  # permissions, a busy file, ...: said, never a crash
                self.notify(os_error_sentence(f"delete {name}", err), severity="error", markup=False)
            else:
                self.notify(f"Deleted {name}.")
            self.refresh_models()

        question = f"Delete the model '{name}' and all its files? This cannot be undone."
        self.app.push_screen(ConfirmDialog(question, yes_label="Delete"), answered)

    # ------------------------------------------------------------------------------------------ push

    def action_push(self) -> None:
        """Ask where to push the highlighted model, then upload it in a thread; one push at a time."""
        info = self.selected_model()
        if info is None:
            return
        if self.pushing is not None:
            busy, where, _ = self.pushing
            self.notify(
                f"A push is in progress ({busy} to {where.repo_id}); wait for it to end.",
                severity="warning",
                markup=False,
            )
            return
        name = info.name
        last = self.push_targets.get(name)
        # The user's Hub name needs the network (whoami); offer the owner of this session's last push, if any.
        initial = last.repo_id if last else f"{self.hub_owner}/{name}" if self.hub_owner else name

        def answered(target: PushTarget | None) -> None:
            if target is not None:
                self.push_targets[name] = target
                self.start_push(name, target)

        from gpt2tui.core.hub import validate_repo_id  # here: not needed for the first frame

        self.app.push_screen(
            PushDialog(name, initial, validate_repo_id, private=last.private if last else True), answered
        )

    def start_push(self, name: str, target: PushTarget) -> None:
        """A daemon thread, not a worker: an upload cannot be interrupted, and quitting must not wait for it
        (the upload is one commit, so an abandoned push leaves nothing half-written on the Hub)."""
        self.pushing = (name, target, time.monotonic())
        self.show_push_progress()
        self.push_timer = self.set_interval(1.0, self.show_push_progress)
        threading.Thread(target=self._push, args=(name, target), name="gpt2tui-push", daemon=True).start()

    def _push(self, name: str, target: PushTarget) -> None:
        """In the thread: the core does every check; its refusal is one sentence, never the token."""
        from gpt2tui.core.hub import push_model

        result, error = None, None
        try:
            result = push_model(name, target.repo_id, target.private, public_hint=PUBLIC_HINT)
        except UserError as err:
            error = str(err)
        except OSError as err:  # the model folder could not be read
            error = os_error_sentence(f"push {name}", err)
        except Exception as err:  # a library bug: said in one sentence, never a crash
            error = f"Pushing {name} failed: {type(err).__name__}."
        self.post_message(ModelPushed(name, target.repo_id, target.private, result, error))

    def show_push_progress(self) -> None:
        if self.pushing is None:
            return
        name, target, started = self.pushing
        visibility = "private" if target.private else "public"
        seconds = int(time.monotonic() - started)
        self.set_push_note(f"Pushing {name} to {target.repo_id} ({visibility})… {seconds} s", "")

    @on(ModelPushed)
    def pushed(self, message: ModelPushed) -> None:
        message.stop()
        self.pushing = None
        if self.push_timer is not None:
            self.push_timer.stop()
            self.push_timer = None
        if message.result is None:
            error = message.error or "The push failed."
            self.set_push_note(error, "error")
            self.notify(error, severity="error", markup=False)
            return
        self.hub_owner = message.repo_id.split("/")[0]
        summary = message.result.summary(asked_private=message.private)
        self.set_push_note(summary[0].upper() + summary[1:] + ".", "done")
        self.notify(f"Pushed {message.name} to {message.repo_id}.", markup=False)

    def set_push_note(self, text: str, state: str) -> None:
        note = self.query_one("#push-note", Static)
        note.update(Text(text))
        note.set_class(state == "error", "error")
        note.set_class(state == "done", "done")
        note.display = True

    # ------------------------------------------------------------------------------------------ runs

    def runs_changed(self, statuses: dict[str, RunStatus]) -> None:
        """The watcher's newest statuses: update rows in place, or rebuild when runs came or went."""
        table = self.query_one("#runs", RunTable)
        ended_now = any(
            status.state in ("stopped", "finished")
            and (old := self.statuses.get(run_id)) is not None
            and old.state != status.state
            for run_id, status in statuses.items()
        )
        previous = self.statuses
        self.statuses = dict(statuses)
        wanted = self.wanted_run if self.wanted_run in statuses else None
        if list(statuses) != [str(key.value) for key in table.rows]:
            keep = wanted or self.selected_run()
            table.clear()
            for run_id, status in statuses.items():
                table.add_row(*run_row(run_id, status), key=run_id)
            if statuses:
                ids = list(statuses)
                table.move_cursor(row=ids.index(keep) if keep in ids else 0)
        else:
            for run_id, status in statuses.items():
                if previous.get(run_id) != status:
                    for column, value in zip(RUN_COLUMNS, run_row(run_id, status), strict=True):
                        table.update_cell(run_id, column, value, update_width=True)
            if wanted is not None:
                table.move_cursor(row=list(statuses).index(wanted))
        if wanted is not None:
            self.wanted_run = None
        table.display = bool(statuses)
        self.show_run_note()
        if ended_now:
            self.refresh_models()  # the run's model was just stored
        self.focus_a_table()
        self.refresh_bindings()

    def selected_run(self) -> str | None:
        return selected_key(self.query_one("#runs", RunTable))

    @on(DataTable.RowHighlighted, "#runs")
    def show_run_note(self) -> None:
        """Under the runs: the highlighted run's failure sentence, or how to see a live run from a shell."""
        self.refresh_bindings()
        note = self.query_one("#run-note", Static)
        run_id = self.selected_run()
        status = self.statuses.get(run_id) if run_id else None
        if status is None:
            note.display = False
            return
        if status.state == "failed":
            reason = failure_in_app(status.message or "no reason was recorded", run_id).rstrip(".")
            note.update(Text(f"Run {run_id} failed: {reason}; r resumes it from its last checkpoint."))
        elif status.live:
            note.update(Text(f"Run {run_id} is its own process; from a shell: gpt2tui runs attach {run_id}"))
        else:
            note.display = False
            return
        note.set_class(status.state == "failed", "error")
        note.display = True

    def require_run(self) -> str | None:
        run_id = self.selected_run()
        if run_id is None:
            self.notify(NO_RUNS, severity="warning")
        return run_id

    @on(DataTable.RowSelected, "#runs")
    def run_selected(self) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        run_id = self.require_run()
        if run_id is not None:
            self.post_message(RunOpened(run_id))

    def action_stop_run(self) -> None:
        run_id = self.require_run()
        if run_id is None:
            return
        error = stop_error(run_id)
        if error is not None:
            self.notify(error, severity="error", markup=False)
            return
        self.notify(f"Stopping run {run_id}: it saves a checkpoint and its model, then ends.")
        self.poll_runs()

    def action_resume_run(self) -> None:
        run_id = self.require_run()
        if run_id is None or run_id in self.resuming:
            return
        self.resuming.add(run_id)
        self.resume_in_thread(run_id)

    @work(thread=True, group="resume", exit_on_error=False)
    def resume_in_thread(self, run_id: str) -> None:
        """In a thread: the check hashes the dataset file."""
        self.post_message(RunResumed(run_id, resume_error(run_id)))

    @on(RunResumed)
    def resumed(self, message: RunResumed) -> None:
        message.stop()
        self.resuming.discard(message.run_id)
        if message.error is not None:
            self.notify(message.error, severity="error", markup=False)
        else:
            self.notify(f"Run {message.run_id} is training again; o opens its monitor.")
            self.poll_runs()

    def action_remove_run(self) -> None:
        """Remove an ended run's folder (its model stays); a live run is refused with the core's sentence."""
        from gpt2tui.core.runs import remove_run

        run_id = self.require_run()
        if run_id is None:
            return

        def remove() -> None:
            try:
                remove_run(run_folder(run_id))
            except UserError as err:
                self.notify(str(err), severity="error", markup=False)
            except OSError as err:
                self.notify(os_error_sentence(f"remove run {run_id}", err), severity="error", markup=False)
            else:
                self.notify(f"Removed run {run_id}.")
                self.poll_runs()

        status = self.statuses.get(run_id)
        if status is not None and status.live:
            remove()  # refused by the core, in its own words: nothing to confirm
            return
        model = f" Its model '{status.model}' stays." if status is not None and status.model else ""
        question = f"Remove run {run_id} with its checkpoints and logs?{model}"

        def answered(yes: bool | None) -> None:
            if yes:
                remove()

        self.app.push_screen(ConfirmDialog(question, yes_label="Remove"), answered)

    def poll_runs(self) -> None:
        watcher = getattr(self.app, "run_watcher", None)
        if watcher is not None:
            watcher.poll_now()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys of an empty list are hidden; run keys that cannot apply to the highlighted run are disabled."""
        if action in ("chat", "rename", "delete", "push") and not self.models:
            return False
        if action in ("open_run", "stop_run", "resume_run", "remove_run") and not self.statuses:
            return False
        run_id = self.selected_run() if action in ("stop_run", "resume_run") else None
        status = self.statuses.get(run_id) if run_id else None
        if action == "stop_run":
            return None if status is None else (status.state in ("starting", "running") or None)
        if action == "resume_run":
            return None if status is None else (status.state in ("stopped", "failed") or None)
        return True  # remove: a live run is refused with the core's own sentence


def selected_key(table: DataTable[str]) -> str | None:
    """The row key under the cursor, or None for an empty table."""
    if not table.row_count:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return row_key.value
