"""Dataset picker: browse or type a path, see the core's summary (or its error) before training.

A file is previewed when it stays highlighted for a moment (``HIGHLIGHT_DELAY``), or at once on enter; the
preview reads the token cache, so going back to a file is fast. Backspace in the folder tree browses the parent
folder, and a folder's path typed in the path box is browsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.validation import Integer
from textual.widget import Widget
from textual.widgets import DirectoryTree, Header, Input, Label, OptionList, Select, Static
from textual.widgets.directory_tree import DirEntry
from textual.widgets.option_list import Option

from gpt2tui.core.data import SUPPORTED, DatasetSummary, DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.paths import SAMPLE_DIR
from gpt2tui.ui.messages import DatasetChosen, PreviewFinished
from gpt2tui.ui.samples import DATA_SUFFIXES, FIRST_SAMPLE, sample_files
from gpt2tui.ui.visible import visible
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.text_field import TextField
from gpt2tui.ui.wording import Advice, count_of_rows, in_screen_terms

DEFAULT_PAIRS = (("question", "answer"), ("prompt", "completion"))
KIND_LABELS = {"text": "plain text", "qa": "question/answer", "prompt-completion": "prompt/completion"}
COLUMNS_HINT = "Choose the columns to train on above: a text column, or a question and an answer column."
PREVIEW_TOKENIZER = "a byte-level BPE trained on this file (scratch tiny)"
HIGHLIGHT_DELAY = 0.3
"""Seconds a file stays highlighted before it is previewed: moving through a list previews only where it stops."""
BAD_BLOCK = "Block size must be a whole number of at least 2."
LINE_BREAK = "↵"
"""Marks a line break inside a plain-text example, so hard-wrapped text wraps once, at the screen's edge."""
DATASET_ADVICE: Advice = {
    "columns": "choose the {word} to train on above",
    "block_size": "set the Block size above to {largest} or less",
    "encoding": "save it as UTF-8 text and choose it again",
}
"""How this screen fixes the core's refusals that name a CLI option (``gpt2tui.ui.wording``)."""


class DataFileTree(DirectoryTree):
    """A directory tree that shows folders and trainable files only, without hidden entries."""

    KEY_MAP_PLACE = "folder tree"  # where its keys work, in the key map

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("backspace", "screen.parent_folder", "Parent folder", tooltip="Browse the parent folder"),
    ]

    async def open_folder(self, folder: Path, highlight: Path | None = None) -> None:
        """Show ``folder`` as the root, then put the cursor on ``highlight`` (the folder left by going up).

        Setting ``path`` alone reloads in a watcher that cannot be awaited; this does the same reload, awaited.
        """
        self.set_reactive(DirectoryTree.path, folder)
        self.reset_node(self.root, str(folder), DirEntry(folder))
        await self.reload()
        self.scroll_to(0, 0, animate=False)
        line = next(
            (
                number
                for number in range(self.last_line + 1)
                if (node := self.get_node_at_line(number)) is not None
                and getattr(node.data, "path", None) == highlight
            ),
            0,
        )
        self.cursor_line = line
        self.scroll_to_line(line, animate=False)

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            path
            for path in paths
            if not path.name.startswith(".") and (path.is_dir() or path.suffix.lower() in DATA_SUFFIXES)
        ]


def has_default_columns(columns: list[str]) -> bool:
    """Whether the core picks columns alone ('text', or a question/answer or prompt/completion pair)."""
    return "text" in columns or any(all(c in columns for c in pair) for pair in DEFAULT_PAIRS)


def render_summary(summary: DatasetSummary) -> Text:
    """The summary as the user reads it: what the file is, how big, and the first rows exactly as trained."""
    kind = KIND_LABELS.get(summary.kind, summary.kind)
    text = Text()
    text.append(f"{summary.path}\n", style="bold")
    columns = f" · columns: {', '.join(summary.columns)}" if summary.columns else ""
    text.append(f"format {summary.format} · {kind}{columns}\n")
    rows = count_of_rows(summary.format, summary.rows)
    text.append(f"{rows} · {summary.characters:,} characters · {summary.tokens:,} tokens\n")
    text.append(
        f"{summary.blocks:,} blocks of {summary.block_size} tokens "
        f"({summary.train_blocks:,} train, {summary.eval_blocks:,} held out for evaluation)\n"
    )
    text.append(f"tokens counted with {PREVIEW_TOKENIZER}\n", style="dim")
    text.append("\nFirst examples, exactly as they will be trained:\n", style="bold")
    plain = summary.format == "txt"
    if plain:
        text.append(f"({LINE_BREAK} marks a line break of the file)\n", style="dim")
    for number, example in enumerate(summary.preview, start=1):
        text.append(f"── {number} ──\n", style="dim")
        if plain:
            append_with_breaks(text, visible(example))
        else:
            text.append(visible(example))
        text.append("\n")
    return text


def append_with_breaks(text: Text, example: str) -> None:
    """Plain text is often wrapped at about 80 columns already; wrapping it again at the panel's width gave
    ragged lines. Its line breaks are shown as marks instead, so it wraps once; blank lines stay."""
    for number, paragraph in enumerate(example.split("\n\n")):
        if number:
            text.append("\n\n")
        for index, line in enumerate(paragraph.split("\n")):
            if index:
                text.append(LINE_BREAK, style="dim")
            text.append(line)


class DatasetScreen(Screen[None]):
    """Pick a file; each choice is previewed by the core in a thread, so errors appear here, not later."""

    CSS_PATH = "dataset.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+n",
            "continue",
            "Continue to setup",
            tooltip="Continue to the fine-tune setup with the previewed file",
        ),
        Binding("ctrl+o", "samples", "Sample files", tooltip="Jump to the sample files"),
        Binding(
            "ctrl+l", "focus_path", "Type a path", tooltip="Type a file's path (or a folder's, to browse it)"
        ),
        Binding("escape", "back", "Back", tooltip="Back to the home screen"),
    ]

    def __init__(self, start_dir: Path | None = None) -> None:
        super().__init__()
        self.start_dir = (start_dir or Path.cwd()).resolve()
        self.spec: DataSpec | None = None
        self.summary: DatasetSummary | None = None
        self.file_format: str | None = None
        self.columns: list[str] = []
        self.request = 0
        self.previewing = False  # a preview of ``self.spec`` is running
        self.highlight_timer: Timer | None = None  # previews the highlighted file once it stays highlighted

    def compose(self) -> ComposeResult:
        samples = sample_files(self.start_dir)
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="left"):
                if samples:
                    folder = self.display_path(samples[0].parent)
                    yield Label(f"Sample files ({folder}/)", classes="section")
                    yield OptionList(*(Option(p.name, id=str(p)) for p in samples), id="samples")
                yield Label(self.browse_label(self.start_dir), classes="section", id="browse")
                yield DataFileTree(self.start_dir, id="tree")
            with Vertical(id="right"):
                yield TextField(placeholder=f"path to a {SUPPORTED} file, then enter", id="path")
                with Horizontal(id="options"):
                    yield Label("Block size", classes="field")
                    yield TextField(
                        placeholder="128",
                        id="block",
                        type="integer",
                        validators=[Integer(minimum=2)],
                        valid_empty=True,
                        tooltip="Tokens per training sequence; blank uses the base model's default.",
                    )
                    yield Label("(enter to apply; blank: the base's default)", classes="hint")
                with Horizontal(id="columns"):
                    yield Select[str]([], prompt="text column", id="text_column")
                    yield Select[str]([], prompt="question column", id="question_column")
                    yield Select[str]([], prompt="answer column", id="answer_column")
                yield Static("", id="status")
                yield Static("", id="error")
                with VerticalScroll(id="summary-box"):
                    yield Static(
                        "Rest the cursor on a file on the left (or press enter) or type its path above: its summary "
                        "appears here.",
                        id="summary",
                    )
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "new fine-tune · 1/3 dataset"
        self.query_one("#columns").display = False
        if not self.focus_samples():
            self.query_one("#tree").focus()

    def focus_samples(self) -> bool:
        """Focus the sample list on the suggested first file; False when there is no sample folder."""
        if not self.query("#samples"):
            return False
        samples = self.query_one("#samples", OptionList)
        names = [Path(str(samples.get_option_at_index(i).id)).name for i in range(samples.option_count)]
        samples.highlighted = names.index(FIRST_SAMPLE) if FIRST_SAMPLE in names else 0
        samples.focus()
        return True

    def display_path(self, path: Path) -> str:
        """``path`` relative to the working directory when inside it (shorter, and what users type)."""
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def browse_label(self, folder: Path) -> str:
        return f"Browse {self.display_path(folder) or '.'}"

    def resolve_input(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() or path.exists() else self.start_dir / path

    # ------------------------------------------------------------------------------------------ choosing

    @on(OptionList.OptionSelected, "#samples")
    def sample_chosen(self, event: OptionList.OptionSelected) -> None:
        self.choose(Path(str(event.option.id)))

    @on(DirectoryTree.FileSelected)
    def file_chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.choose(event.path)

    @on(OptionList.OptionHighlighted, "#samples")
    def sample_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.preview_soon(Path(str(event.option.id)), event.option_list)

    @on(DirectoryTree.NodeHighlighted, "#tree")
    def node_highlighted(self, event: DirectoryTree.NodeHighlighted[object]) -> None:
        path = getattr(event.node.data, "path", None)
        if isinstance(path, Path) and not path.is_dir():
            self.preview_soon(path, event.control)

    def preview_soon(self, path: Path, source: Widget) -> None:
        """Preview ``path`` once it has stayed highlighted for ``HIGHLIGHT_DELAY`` in ``source``, the list it
        is in (a newer highlight or an explicit choice cancels it)."""
        self.cancel_highlight_preview()
        self.highlight_timer = self.set_timer(
            HIGHLIGHT_DELAY, partial(self.preview_highlighted, path, source)
        )

    def preview_highlighted(self, path: Path, source: Widget) -> None:
        """Only while the list still has focus (a user who has moved on to type a path keeps the path box), and
        only a file not already previewed."""
        self.highlight_timer = None
        if not source.has_focus:
            return
        if self.spec is not None and self.spec.path == self.display_path(path):
            return  # already shown or being read (chosen with enter meanwhile), with any columns chosen for it
        self.choose(path)

    def cancel_highlight_preview(self) -> None:
        if self.highlight_timer is not None:
            self.highlight_timer.stop()
            self.highlight_timer = None

    @on(Input.Submitted, "#path")
    def path_typed(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            return
        path = self.resolve_input(event.value.strip())
        if path.is_dir():
            self.forget_choice()  # the file chosen before is no longer what the path box says
            self.browse(path)
            return
        self.choose(path, keep_input=True)

    @on(Input.Submitted, "#block")
    def block_typed(self, event: Input.Submitted) -> None:
        if event.validation_result is not None and not event.validation_result.is_valid:
            self.show_error(BAD_BLOCK)
            self.query_one("#status", Static).update("")  # no "continue" under a refused value
            return
        if self.spec is not None:
            self.start_preview(self.spec)

    @on(Select.Changed)
    def column_changed(self) -> None:
        if self.spec is None:
            return
        spec = self.spec_from_columns(self.spec.path)
        if spec != self.spec:
            self.start_preview(spec)

    def choose(self, path: Path, keep_input: bool = False) -> None:
        self.cancel_highlight_preview()
        shown = self.display_path(path)
        if not keep_input:
            self.query_one("#path", Input).value = shown
        if self.previewing and self.spec == DataSpec(shown):
            return  # already being read (highlighted, then enter)
        self.columns = []
        self.query_one("#columns").display = False
        self.start_preview(DataSpec(shown))

    @work(exclusive=True, group="browse")
    async def browse(self, folder: Path) -> None:
        """Show ``folder`` in the tree, with the cursor on the folder it was opened from (going up)."""
        tree = self.query_one("#tree", DataFileTree)
        came_from = Path(tree.path).resolve()
        folder = folder.resolve()
        self.query_one("#browse", Label).update(self.browse_label(folder))
        tree.focus()
        await tree.open_folder(folder, highlight=came_from)

    def spec_from_columns(self, path: str) -> DataSpec:
        chosen = {
            name: value
            for name in ("text_column", "question_column", "answer_column")
            if isinstance(value := self.query_one(f"#{name}", Select).value, str)
        }
        if "text_column" in chosen:
            return DataSpec(path, text_column=chosen["text_column"])
        return DataSpec(
            path, question_column=chosen.get("question_column"), answer_column=chosen.get("answer_column")
        )

    def block_size(self) -> int | None:
        value = self.query_one("#block", Input).value.strip()
        try:
            return int(value) if value else None
        except ValueError:
            return None

    # ------------------------------------------------------------------------------------------ preview

    def start_preview(self, spec: DataSpec) -> None:
        self.request += 1
        self.spec = spec
        self.summary = None
        self.previewing = True
        self.query_one("#status", Static).update(f"Reading {spec.path} …")
        self.show_error("")
        self.run_preview(spec, self.block_size(), self.request)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def run_preview(self, spec: DataSpec, block_size: int | None, request: int) -> None:
        """Fast checks first (``inspect_file``), then the full preview with a scratch tokenizer."""
        from gpt2tui.core.data import inspect_file
        from gpt2tui.core.training import preview
        from gpt2tui.ui.libraries import ensure_libraries

        file_format, columns = None, []
        try:
            file_format, columns = inspect_file(spec)
            ensure_libraries()
            summary = preview(spec, block_size=block_size)
        except UserError as err:
            error = in_screen_terms(err, DATASET_ADVICE)
            self.post_message(PreviewFinished(spec, None, error, file_format, columns, request))
            return
        except Exception as err:  # a library failure must not take the app down
            message = f"Could not preview {spec.path}: {type(err).__name__}: {err}".rstrip(": ") + "."
            self.post_message(PreviewFinished(spec, None, message, file_format, columns, request))
            return
        self.post_message(PreviewFinished(spec, summary, None, file_format, columns, request))

    @on(PreviewFinished)
    def preview_finished(self, message: PreviewFinished) -> None:
        if message.request != self.request:
            return
        self.previewing = False
        self.query_one("#status", Static).update("")
        self.file_format = message.file_format
        self.offer_columns(message)
        if message.summary is None:
            self.show_error(message.error or "")
            if self.query_one("#columns").display:
                self.query_one("#status", Static).update(COLUMNS_HINT)
            self.query_one("#summary", Static).update("")
            return
        self.summary = message.summary
        self.show_error("")
        self.query_one("#summary", Static).update(render_summary(message.summary))
        self.query_one("#status", Static).update("ctrl+n: continue to the fine-tune setup")

    def offer_columns(self, message: PreviewFinished) -> None:
        """Show the column choice when the file is CSV/JSONL and the core cannot pick its columns alone."""
        custom = any((message.spec.text_column, message.spec.question_column, message.spec.answer_column))
        needed = message.file_format in ("csv", "jsonl") and (
            custom or not has_default_columns(message.columns)
        )
        row = self.query_one("#columns")
        row.display = needed
        if not needed or message.columns == self.columns:
            return
        self.columns = list(message.columns)
        options = [(column, column) for column in message.columns]
        for name in ("text_column", "question_column", "answer_column"):
            self.query_one(f"#{name}", Select).set_options(options)

    def show_error(self, message: str) -> None:
        error = self.query_one("#error", Static)
        error.update(message)
        error.display = bool(message)

    # ------------------------------------------------------------------------------------------ actions

    def forget_choice(self) -> None:
        """No file chosen: its preview, error and the way on are cleared (a preview still running is dropped)."""
        self.request += 1
        self.spec, self.summary, self.previewing = None, None, False
        self.show_error("")
        self.query_one("#summary", Static).update("")
        self.query_one("#status", Static).update("")

    def action_continue(self) -> None:
        if not self.query_one("#block", Input).is_valid:
            self.show_error(BAD_BLOCK)
            self.notify(BAD_BLOCK, severity="warning")
            return
        if self.spec is None or self.summary is None:
            self.notify("Choose a file that previews without errors first.", severity="warning")
            return
        self.post_message(DatasetChosen(self.spec, self.summary, self.block_size()))

    def action_samples(self) -> None:
        if not self.focus_samples():
            self.notify(
                f"There are no sample files: no {SAMPLE_DIR}/ folder in {self.start_dir} or next to gpt2tui.",
                severity="warning",
            )

    def action_focus_path(self) -> None:
        """Focus the path box with its text selected, so typing replaces the old path."""
        path = self.query_one("#path", Input)
        path.focus()
        path.select_all()

    def action_parent_folder(self) -> None:
        folder = Path(self.query_one("#tree", DataFileTree).path).resolve()
        if folder.parent == folder:
            self.notify(f"{folder} has no parent folder.", severity="warning")
            return
        self.browse(folder.parent)

    def action_back(self) -> None:
        self.dismiss()
