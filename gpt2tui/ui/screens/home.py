"""Home: the stored models, with chat, rename, delete and "new fine-tune"."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from gpt2tui.core.errors import UserError
from gpt2tui.core.store import ModelInfo, ModelStore
from gpt2tui.ui.screens.dataset import FIRST_SAMPLE, sample_files

EMPTY_TEXT = """\
[b]No fine-tuned models yet.[/b]

gpt2tui fine-tunes GPT-2 on a text, CSV or JSON-lines file and lets you chat with the result.
To try it in about a minute on this machine:

  1. press [b]n[/b] (new fine-tune)
  2. {pick} and press [b]ctrl+n[/b]
  3. keep the base [b]scratch[/b], size [b]tiny[/b], and press [b]ctrl+s[/b] to start training
  4. when the run ends, press [b]c[/b] to chat with your model

Your models are listed here afterwards; ctrl+p opens the command palette, ctrl+q quits."""
PICK_SAMPLE = (
    "press [b]enter[/b] on [b]qa.csv[/b] (highlighted; 68 questions and answers about the solar system)"
)
PICK_ANY = "pick a .txt, .csv or .jsonl file of your own (browse on the left, or ctrl+l to type its path)"


def empty_text(start_dir: Path | None) -> str:
    """The first-start walkthrough; it names the sample file only when the dataset picker will list it."""
    listed = any(path.name == FIRST_SAMPLE for path in sample_files(start_dir))
    return EMPTY_TEXT.format(pick=PICK_SAMPLE if listed else PICK_ANY)


def perplexity_change(info: ModelInfo) -> str:
    """``before → after`` with one decimal, or a dash when the metadata lacks it."""
    before, after = info.get("perplexity_before"), info.get("perplexity_after")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return "-"
    return f"{before:,.1f} → {after:,.1f}"


def describe_base(info: ModelInfo) -> str:
    base = str(info.get("base", "?"))
    size = info.get("scratch_size")
    return f"{base} ({size})" if base == "scratch" and size else base


def describe_dataset(info: ModelInfo) -> str:
    dataset = info.get("dataset") or {}
    if not isinstance(dataset, dict) or not dataset.get("path"):
        return "-"
    rows = dataset.get("rows")
    return (
        f"{Path(str(dataset['path'])).name} ({rows} rows)"
        if rows is not None
        else Path(str(dataset["path"])).name
    )


def describe_date(info: ModelInfo) -> str:
    created = info.get("created")
    try:
        return datetime.fromisoformat(str(created)).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "-"


class HomeScreen(Screen[None]):
    """The model list; refreshed every time the screen comes back."""

    CSS_PATH = "home.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_finetune", "New fine-tune"),
        Binding("c", "chat", "Chat"),
        Binding("r", "rename", "Rename"),
        Binding("d", "delete", "Delete"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(empty_text(getattr(self.app, "start_dir", None)), id="empty")
        table: DataTable[str] = DataTable(id="models", cursor_type="row", zebra_stripes=True)
        table.add_columns("name", "base", "dataset", "date", "perplexity before → after")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "models"
        self.refresh_models()

    def on_screen_resume(self) -> None:
        self.refresh_models()

    def refresh_models(self, select: str | None = None) -> None:
        """Reload the store into the table, keeping the cursor on ``select`` (or the current row)."""
        table = self.query_one("#models", DataTable)
        keep = select or self.selected_name()
        table.clear()
        models = ModelStore().list()
        for info in models:
            table.add_row(
                info.name,
                describe_base(info),
                describe_dataset(info),
                describe_date(info),
                perplexity_change(info),
                key=info.name,
            )
        self.query_one("#empty").display = not models
        table.display = bool(models)
        if models:
            names = [info.name for info in models]
            table.move_cursor(row=names.index(keep) if keep in names else 0)
            table.focus()

    def selected_name(self) -> str | None:
        table = self.query_one("#models", DataTable)
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return row_key.value

    def require_selection(self) -> str | None:
        name = self.selected_name()
        if name is None:
            self.notify("There are no stored models yet; press n to fine-tune one.", severity="warning")
        return name

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_chat()

    def action_new_finetune(self) -> None:
        from gpt2tui.ui.screens.dataset import DatasetScreen

        self.app.push_screen(DatasetScreen(getattr(self.app, "start_dir", None)))

    def action_chat(self) -> None:
        name = self.require_selection()
        if name is not None:
            open_chat(self, name)

    def action_rename(self) -> None:
        from gpt2tui.ui.screens.dialogs import NameDialog

        name = self.require_selection()
        if name is None:
            return

        def apply(new: str) -> None:
            ModelStore().rename(name, new)

        def renamed(new: str | None) -> None:
            if new:
                self.refresh_models(select=new)
                self.notify(f"Renamed {name} to {new}.")

        dialog = NameDialog(f"Rename '{name}' to:", name, apply, doing=f"rename {name}")
        self.app.push_screen(dialog, renamed)

    def action_delete(self) -> None:
        from gpt2tui.ui.screens.dialogs import ConfirmDialog, os_error_sentence

        name = self.require_selection()
        if name is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                ModelStore().delete(name)
            except UserError as err:
                self.notify(str(err), severity="error")
            except OSError as err:  # permissions, a busy file, ...: said, never a crash
                self.notify(os_error_sentence(f"delete {name}", err), severity="error")
            else:
                self.notify(f"Deleted {name}.")
            self.refresh_models()

        question = f"Delete the model '{name}' and all its files? This cannot be undone."
        self.app.push_screen(ConfirmDialog(question, yes_label="Delete"), answered)


def open_chat(screen: Screen[object], name: str) -> None:
    """Push the chat screen for a stored model (the chat module is imported only when needed)."""
    from gpt2tui.ui.screens.chat import ChatScreen

    screen.app.push_screen(ChatScreen(name))
