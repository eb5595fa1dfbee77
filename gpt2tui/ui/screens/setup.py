"""Fine-tune setup: base model, name and hyperparameters, each refused in place when it is invalid."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.validation import Integer, Number, Validator
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, Static

from gpt2tui.core.config import MAX_SEED, MAX_STEPS
from gpt2tui.core.data import DatasetSummary, DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import HUB_EXAMPLES, SCRATCH_SIZES
from gpt2tui.core.training import TrainConfig
from gpt2tui.ui.messages import DataRecounted, HubProbed, RunLaunched, RunLaunchFailed
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.text_field import TextField
from gpt2tui.ui.wording import Advice, count_of_rows, in_screen_terms

SCRATCH_MAX_STEPS = "200"
DEFAULTS = TrainConfig(DataSpec(""))
START_LABEL = "Start training (ctrl+s)"
LENGTHS = [("epochs", "epochs"), ("max steps", "max_steps")]
EVAL_EVERY = "50"  # a held-out loss and a sample every 50 steps, so progress can be read
BASE_KINDS = [
    ("scratch (a new model)", "scratch"),
    ("Hugging Face Hub id", "hub"),
    ("local folder", "local"),
]
SCRATCH_LABELS = {
    "tiny": "tiny (0.2M params, fast)",
    "small": "small (14M params)",
    "gpt2": "gpt2 (124M params)",
}
HUB_UNREACHABLE = (
    "The Hugging Face Hub cannot be reached from this machine, so a Hub model only works if it is "
    "already in the local cache. Offline you can still fine-tune a local save_pretrained folder or train "
    "a new model: choose 'local folder' or 'scratch' as the Base above."
)
HUB_NOT_CACHED = (
    "{base} is not in the local Hugging Face cache and the Hub cannot be reached, so it cannot be "
    "downloaded; choose a cached model, a local folder or scratch."
)


SETUP_ADVICE: Advice = {
    "name_taken": "change the Name, or delete that model on the home screen (d)",
    "name_claimed": "change the Name",
    "block_size": "set the Block size to {largest} or less",
}
"""How this screen fixes the core's refusals that name a CLI option (``gpt2tui.ui.wording``)."""


def sample_prompt_for(summary: DatasetSummary | None) -> str | None:
    """The fixed prompt sampled at each eval: a question from Q/A data, else the data's first words."""
    return summary.sample_prompt if summary is not None else None


class BetweenZeroAndOne(Validator):
    def validate(self, value: str):  # type: ignore[no-untyped-def]
        try:
            number = float(value)
        except ValueError:
            return self.failure("Must be a number.")
        return self.success() if 0 < number < 1 else self.failure("Must be between 0 and 1 (exclusive).")


FIELD_LABELS = {"lr": "Learning rate"}
"""A field's label where its id, capitalised, is not it."""


def requirement(validator: Validator) -> str:
    """What a field's validator asks for, as the end of a sentence ("a whole number of at least 1")."""
    if isinstance(validator, BetweenZeroAndOne):
        return "a number between 0 and 1 (not 0 or 1)"
    if not isinstance(validator, Number):
        return "valid"
    kind = "a whole number" if isinstance(validator, Integer) else "a number"

    def shown(bound: float) -> str:
        return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"

    low, high = validator.minimum, validator.maximum
    if low is not None and high is not None:
        return f"{kind} from {shown(low)} to {shown(high)}"
    if low is not None:
        return f"{kind} of at least {shown(low)}"
    return f"{kind} of at most {shown(high)}" if high is not None else kind


class SetupScreen(Screen[None]):
    """Collect a :class:`TrainConfig` and start it as a run; the core's own validation decides what is refused.

    Enter never starts training (it submits a field or opens a list): only ctrl+s or the Start button do.
    """

    CSS_PATH = "setup.tcss"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-narrow"), (100, "-wide")]
    """Below 100 columns the form is one field per row (setup.tcss), so no choice is cut to fit."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+s",
            "start",
            "Start training",
            tooltip="Start the run in its own process and open its monitor",
        ),
        Binding("escape", "back", "Back", tooltip="Back to the dataset"),
    ]

    def __init__(
        self, spec: DataSpec, summary: DatasetSummary | None = None, block_size: int | None = None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.summary = summary
        self.count_request = 0  # numbers recounts, so a slow answer to an older choice is ignored
        self.preview_block_size = block_size
        self.auto_name: str | None = None
        self.hub_reachable: bool | None = None  # the probe's answer, once it came
        self.launching = False

    def compose(self) -> ComposeResult:
        yield Header()
        form_box = VerticalScroll(id="form-box")
        form_box.can_focus = False  # Tab goes from the last field straight to the first, not to the container
        with form_box:  # scrolls on a small terminal; a focused field scrolls into view
            yield Static(self.dataset_line(), id="dataset")
            with Grid(id="form"):
                yield Label("Base", classes="field")
                yield Select(BASE_KINDS, value="scratch", allow_blank=False, id="base_kind")
                yield Label("Hub id / folder", classes="field")
                yield TextField(placeholder=HUB_EXAMPLES[0], id="base", disabled=True)
                yield Label("Scratch size", classes="field")
                yield Select(
                    [(SCRATCH_LABELS.get(size, size), size) for size in SCRATCH_SIZES],
                    value="tiny",
                    allow_blank=False,
                    id="scratch_size",
                )
                yield Label("Name", classes="field")
                yield TextField(id="name", tooltip="The stored model's name.")
                yield Label("Length by", classes="field")
                yield Select(LENGTHS, value="max_steps", allow_blank=False, id="length")
                yield Label("Epochs", classes="field")
                yield TextField(
                    "3",
                    id="epochs",
                    validators=[Number(minimum=0.0001)],
                    disabled=True,
                    tooltip="Passes over the training blocks (when the length is by epochs).",
                )
                yield Label("Max steps", classes="field")
                yield TextField(
                    SCRATCH_MAX_STEPS,
                    id="max_steps",
                    validators=[Integer(minimum=1, maximum=MAX_STEPS)],
                    tooltip="Optimizer steps (when the length is by max steps).",
                )
                yield Label("Block size", classes="field")
                block = str(self.preview_block_size) if self.preview_block_size else ""
                yield TextField(
                    block,
                    id="block_size",
                    placeholder="blank: base default",
                    validators=[Integer(minimum=2)],
                    valid_empty=True,
                )
                yield Label("Batch size", classes="field")
                yield TextField("8", id="batch_size", validators=[Integer(minimum=1)])
                yield Label("Grad accum", classes="field")
                yield TextField("1", id="grad_accum", validators=[Integer(minimum=1)])
                yield Label("Learning rate", classes="field")
                yield TextField(
                    id="lr",
                    placeholder="blank: base default",
                    validators=[BetweenZeroAndOne()],
                    valid_empty=True,
                )
                yield Label("Eval split", classes="field")
                yield TextField("0.1", id="eval_split", validators=[BetweenZeroAndOne()])
                yield Label("Eval every", classes="field")
                yield TextField(
                    EVAL_EVERY,
                    id="eval_every",
                    placeholder="0: before and after only",
                    validators=[Integer(minimum=0)],
                )
                yield Label("Save every", classes="field")
                yield TextField(
                    str(DEFAULTS.save_every),
                    id="save_every",
                    placeholder="0: only when stopped",
                    validators=[Integer(minimum=0)],
                    tooltip="Optimizer steps between checkpoints (a stopped or failed run resumes from one).",
                )
                yield Label("Seed", classes="field")
                yield TextField("42", id="seed", validators=[Integer(minimum=0, maximum=MAX_SEED)])
                yield Label("Keep best", classes="field")
                yield Checkbox(
                    "best eval's weights",
                    DEFAULTS.keep_best,
                    id="keep_best",
                    tooltip="Store the weights of the lowest held-out loss, not those of the last step.",
                )
        # Outside the scrolling form, so a refusal and the Hub's answer are on screen whatever is scrolled.
        with Horizontal(id="actions"):
            with Vertical(id="messages"):
                yield Static("", id="hub")
                yield Static("", id="error")
            yield Button(START_LABEL, variant="success", id="start")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "new fine-tune · 2/3 setup"
        self.query_one("#error").display = False
        self.query_one("#hub").display = False
        self.update_auto_name()
        self.query_one("#base_kind", Select).focus()  # not the Start button: Enter must not start a run

    def dataset_line(self) -> str:
        if self.summary is None:
            return f"Dataset: {self.spec.path}"
        s = self.summary
        return (
            f"Dataset: {s.path} · {s.format} · {s.kind} · {count_of_rows(s.format, s.rows)} · {s.tokens:,} tokens · "
            f"{s.blocks:,} blocks of {s.block_size} ({s.train_blocks:,} train, {s.eval_blocks:,} eval)"
        )

    # ------------------------------------------------------------------------- counts with the chosen base

    def base_ref(self) -> str | None:
        """The base as training will get it, or None while it is incomplete."""
        kind = self.base_kind()
        if kind == "scratch":
            return "scratch"
        return self.query_one("#base", Input).value.strip() or None

    def recount(self) -> None:
        """Count tokens and blocks again with the chosen base's tokenizer (a Hub base only when cached)."""
        base = self.base_ref()
        if base is None:
            return
        block = self.query_one("#block_size", Input).value.strip()
        if block and not (block.isdigit() and int(block) >= 2):
            return
        self.count_request += 1
        size = str(self.query_one("#scratch_size", Select).value)
        self.run_recount(base, size, int(block) if block else None, self.count_request)

    @work(thread=True, exclusive=True, group="recount", exit_on_error=False)
    def run_recount(self, base: str, scratch_size: str, block_size: int | None, request: int) -> None:
        from gpt2tui.core.training import preview
        from gpt2tui.ui.libraries import ensure_libraries

        try:
            ensure_libraries()
            summary = preview(self.spec, base=base, scratch_size=scratch_size, block_size=block_size)
        except UserError as err:
            self.post_message(DataRecounted(None, in_screen_terms(err, SETUP_ADVICE), request))
        except Exception as err:  # a broken tokenizer folder, ...: shown, never a crash
            self.post_message(DataRecounted(None, f"{type(err).__name__}: {err}", request))
        else:
            self.post_message(DataRecounted(summary, None, request))

    @on(DataRecounted)
    def recounted(self, message: DataRecounted) -> None:
        if message.request != self.count_request:
            return  # an answer to an older choice
        line = self.query_one("#dataset", Static)
        if message.summary is not None:
            self.summary = message.summary
            line.update(self.dataset_line())
            line.set_class(False, "unusable")
        else:
            line.update(Text(f"Dataset: {self.spec.path} · {message.error}"))
            line.set_class(True, "unusable")

    # ------------------------------------------------------------------------------------------ base choice

    def base_kind(self) -> str:
        return str(self.query_one("#base_kind", Select).value)

    def base_label(self) -> str:
        kind = self.base_kind()
        if kind == "scratch":
            return f"scratch-{self.query_one('#scratch_size', Select).value}"
        base = self.query_one("#base", Input).value.strip() or HUB_EXAMPLES[0]
        return Path(base.rstrip("/")).name or "model"

    def update_auto_name(self) -> None:
        """Keep the suggested name in step with the base until the user types their own (free in the store
        and among the names live runs will write)."""
        from gpt2tui.core.launch import suggest_name

        name_input = self.query_one("#name", Input)
        if self.auto_name is not None and name_input.value != self.auto_name:
            return
        self.auto_name = suggest_name(f"{Path(self.spec.path).stem}-{self.base_label()}")
        name_input.value = self.auto_name

    @on(Select.Changed, "#base_kind")
    def base_kind_changed(self) -> None:
        kind = self.base_kind()
        base = self.query_one("#base", Input)
        base.disabled = kind == "scratch"
        base.placeholder = {"hub": HUB_EXAMPLES[0], "local": "path/to/a/save_pretrained/folder"}.get(kind, "")
        self.query_one("#scratch_size", Select).disabled = kind != "scratch"
        # A new model needs a fixed number of steps; a pretrained base is fine-tuned by epochs. The user's
        # own numbers are kept; only the untouched scratch default follows the base.
        length = self.query_one("#length", Select)
        max_steps = self.query_one("#max_steps", Input)
        if kind == "scratch" and length.value == "epochs" and not max_steps.value:
            max_steps.value = SCRATCH_MAX_STEPS
            length.value = "max_steps"
        elif kind == "scratch" and max_steps.value == SCRATCH_MAX_STEPS:
            length.value = "max_steps"
        elif kind != "scratch" and length.value == "max_steps" and max_steps.value == SCRATCH_MAX_STEPS:
            length.value = "epochs"
        hub = self.query_one("#hub", Static)
        hub.display = kind == "hub"
        if kind == "hub":
            if not base.value:
                base.value = HUB_EXAMPLES[0]
            hub.update("Checking whether the Hugging Face Hub can be reached …")
            hub.set_class(False, "unreachable")
            self.probe_hub()
        self.update_auto_name()
        self.recount()

    @on(Select.Changed, "#length")
    def length_changed(self) -> None:
        """One of epochs and max steps decides the length; the other field is disabled and not used."""
        by_steps = self.query_one("#length", Select).value == "max_steps"
        self.query_one("#max_steps", Input).disabled = not by_steps
        self.query_one("#epochs", Input).disabled = by_steps

    @on(Input.Changed, "#base")
    def base_changed(self) -> None:
        self.update_auto_name()

    @on(Select.Changed, "#scratch_size")
    @on(Input.Submitted, "#base")
    @on(Input.Blurred, "#base")
    @on(Input.Submitted, "#block_size")
    @on(Input.Blurred, "#block_size")
    def counts_changed(self) -> None:
        """Recount once a choice is complete (not per keystroke: a Hub base may need a download)."""
        self.update_auto_name()
        self.recount()

    @work(thread=True, exclusive=True, group="hub", exit_on_error=False)
    def probe_hub(self) -> None:
        from gpt2tui.core.models import hub_reachable

        self.post_message(HubProbed(hub_reachable()))

    @on(HubProbed)
    def hub_probed(self, message: HubProbed) -> None:
        self.hub_reachable = message.reachable
        hub = self.query_one("#hub", Static)
        if message.reachable:
            hub.update("The Hugging Face Hub is reachable; the model is downloaded when training starts.")
        else:
            hub.update(HUB_UNREACHABLE)
        hub.set_class(not message.reachable, "unreachable")

    # ------------------------------------------------------------------------------------------ the config

    def show_error(self, message: str, focus: str | None = None) -> None:
        """Say why the form was refused, under the form, and bring the field it concerns into view."""
        error = self.query_one("#error", Static)
        error.update(Text(message))
        error.display = bool(message)
        if focus:
            field = self.query_one(f"#{focus}")
            field.focus(scroll_visible=False)
            # After the error line has taken its room (the form's view shrinks), so the field stays visible.
            self.call_after_refresh(field.scroll_visible, animate=False)

    def field(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def build_config(self) -> TrainConfig:
        """The config from the form; raises :class:`UserError` naming the first bad field."""
        from gpt2tui.core.store import ModelStore, validate_name

        for input_ in self.query("#form Input").results(Input):
            if input_.disabled or (input_.valid_empty and not input_.value.strip()):
                continue
            result = input_.validate(input_.value.strip())
            if result is not None and not result.is_valid:
                field_id = input_.id or ""
                label = FIELD_LABELS.get(field_id, field_id.replace("_", " ").capitalize() or "A field")
                failed = result.failures[0].validator if result.failures else None
                wanted = requirement(failed) if failed is not None else "valid"
                raise FieldError(f"{label} must be {wanted}.", input_.id)
        kind = self.base_kind()
        base = "scratch" if kind == "scratch" else self.field("base")
        if not base:
            raise FieldError("Enter a Hub model id or a folder path as the base.", "base")
        if kind == "local" and not Path(base).expanduser().is_dir():
            raise FieldError(f"No folder at {base}; give the path of a save_pretrained folder.", "base")
        if kind == "hub" and self.hub_reachable is False:
            from gpt2tui.core.models import hub_cached

            if not hub_cached(base):
                raise FieldError(HUB_NOT_CACHED.format(base=base), "base")
        name = self.field("name")
        try:
            validate_name(name)
            ModelStore().require_free(name)
        except UserError as err:
            raise FieldError(in_screen_terms(err, SETUP_ADVICE), "name") from None
        block_size, lr = self.field("block_size"), self.field("lr")
        by_steps = self.query_one("#length", Select).value == "max_steps"
        config = TrainConfig(
            data=self.spec,
            base=base if kind != "local" else str(Path(base).expanduser()),
            scratch_size=str(self.query_one("#scratch_size", Select).value),
            name=name,
            epochs=DEFAULTS.epochs if by_steps else float(self.field("epochs")),
            max_steps=int(self.field("max_steps")) if by_steps else None,
            block_size=int(block_size) if block_size else None,
            batch_size=int(self.field("batch_size")),
            grad_accum=int(self.field("grad_accum")),
            lr=float(lr) if lr else None,
            eval_split=float(self.field("eval_split")),
            eval_every=int(self.field("eval_every")),
            seed=int(self.field("seed")),
            save_every=int(self.field("save_every")),
            keep_best=self.query_one("#keep_best", Checkbox).value,
            log_every=1,
            sample_prompt=sample_prompt_for(self.summary),
        )
        config.validate()
        return config

    def action_start(self) -> None:
        if self.launching:
            return
        try:
            config = self.build_config()
        except FieldError as err:
            self.show_error(str(err), err.field)
            return
        except UserError as err:
            self.show_error(str(err))
            return
        self.show_error("")
        self.launching = True
        start = self.query_one("#start", Button)
        start.disabled = True
        start.label = "Starting the run …"
        self.launch(config)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, config: TrainConfig) -> None:
        """Start the run as its own process (about a second: the file is checked and hashed first)."""
        from gpt2tui.core.launch import start_detached

        try:
            run = start_detached(config)
        except UserError as err:
            self.post_message(RunLaunchFailed(in_screen_terms(err, SETUP_ADVICE)))
        except OSError as err:
            self.post_message(RunLaunchFailed(f"Could not start the run: {err.strerror or err}."))
        else:
            self.post_message(RunLaunched(run.id))  # the App opens its monitor

    @on(RunLaunched)
    @on(RunLaunchFailed)
    def launch_answered(self, message: RunLaunched | RunLaunchFailed) -> None:
        """Ready for another start (the run's own monitor comes from the App); a refusal is shown in place."""
        self.launching = False
        start = self.query_one("#start", Button)
        start.disabled = False
        start.label = START_LABEL
        if isinstance(message, RunLaunchFailed):
            message.stop()
            self.show_error(message.error)

    def on_screen_resume(self) -> None:
        self.update_auto_name()  # the last run may have taken the suggested name

    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        self.action_start()

    def action_back(self) -> None:
        self.dismiss()


class FieldError(UserError):
    """A :class:`UserError` about one form field, so the form can focus it."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field
