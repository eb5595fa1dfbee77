"""The decoding grid: one prompt answered under greedy, beam, top-k, top-p and a temperature sweep, side by side.

The cells are ``gpt2tui compare-decoding``'s (``core.compare``): the same settings, the same fixed seed and the
same figures, so the grid shows what the command prints. They run one after another and each fills as its reply
streams; its border then carries its figures (tokens/s, length, distinct-2, repeated 4-grams, mean
log-probability).

The model is the chat's own when the chat hands it over (its child process, idle while the grid is shown), else
a child process of the grid's own (``core.generator``), started here and ended when the grid closes. A model
injected by a test generates in this process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Header, Static

from gpt2tui.core.compare import Cell, grid_settings
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, LoadedModel
from gpt2tui.core.generator import GeneratorProcess, in_process_requested
from gpt2tui.ui.visible import visible
from gpt2tui.ui.widgets.chat_pane import FLUSH_SECONDS, start_daemon
from gpt2tui.ui.widgets.footer import Footer

GridModel = LoadedModel | GeneratorProcess
WIDE = 110  # columns from which the grid has three cells a row (else two)
CHROME_ROWS = 5  # the header, the prompt, the status line, the footer and a spare row


@dataclass(eq=False)
class Slot:
    """One cell of the grid while it is generated: its settings, streamed text and, at the end, figures."""

    label: str
    settings: GenerationSettings
    chunks: deque[str] = field(default_factory=deque)
    text: str = ""
    cell: Cell | None = None
    error: str | None = None


class GridLoaded(Message):
    def __init__(self, model: GridModel) -> None:
        super().__init__()
        self.model = model


class GridFailed(Message):
    """Loading or a cell failed: ``error`` is a sentence (``index`` the cell, -1 for the load)."""

    def __init__(self, index: int, error: str) -> None:
        super().__init__()
        self.index = index
        self.error = error


class CellDone(Message):
    def __init__(self, index: int, cell: Cell) -> None:
        super().__init__()
        self.index = index
        self.cell = cell


class GridDone(Message):
    """Every cell ran (or the run was stopped)."""


class GridCell(VerticalScroll, can_focus=True):
    """A cell's reply, bordered: the label and settings on top, the figures underneath once done; it scrolls
    when focused (Tab), and Enter shows it alone."""

    ALLOW_MAXIMIZE = True  # scroll containers refuse by default

    def __init__(self, slot: Slot, id: str) -> None:
        super().__init__(id=id)
        self.slot = slot
        self.body = Static(Text("waiting…", style="dim italic"))

    def compose(self) -> ComposeResult:
        yield self.body

    def on_mount(self) -> None:
        self.border_title = self.slot.settings.describe()  # the strategy and every parameter it uses

    def update(self, text: Text) -> None:
        self.body.update(text)

    def show(self) -> None:
        slot = self.slot
        if slot.error:
            self.update(Text(f"failed: {slot.error}", style="bold red"))
            self.border_subtitle = "failed"
            return
        body = slot.text.strip("\n")
        text = Text()
        if slot.cell is not None:
            text.append(cell_figures(slot.cell) + "\n", style="dim")
            self.border_subtitle = f"{slot.cell.tokens_per_second:,.0f} tok/s · {slot.cell.new_tokens} tokens"
            self.add_class("done")
        if slot.cell is not None and not body.strip():
            text.append("(empty reply)", style="dim")
        elif slot.cell is None and not body:
            text.append("waiting…", style="dim italic")
        else:
            text.append(visible(body))
        self.update(text)
        if slot.cell is None and body:
            self.scroll_end(
                animate=False
            )  # a streaming cell follows its text; a finished one can be scrolled


def cell_figures(cell: Cell) -> str:
    """A finished cell's quality figures, one line at a third of 120 columns: distinct-2, repeated 4-grams,
    mean token log-probability (none for beam search)."""
    parts = []
    if cell.distinct_2 is not None:
        parts.append(f"d2 {cell.distinct_2:.2f}")
    if cell.repeated_4gram_rate is not None:
        parts.append(f"rep4 {cell.repeated_4gram_rate:.2f}")
    if cell.mean_token_logprob is not None:
        parts.append(f"logp {cell.mean_token_logprob:.2f}")
    if cell.stopped:
        parts.append("stopped")
    return " · ".join(parts)


class GridScreen(Screen[None]):
    """Every decoding strategy's reply to one prompt, filling in as they stream."""

    CSS_PATH = "grid.tcss"
    AUTO_FOCUS = "GridCell"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "stop/back", tooltip="Stop the grid (when done: back to the chat)"),
        Binding("ctrl+r", "rerun", "run again", tooltip="Run the grid again (the same cells and seed)"),
        Binding(
            "ctrl+s", "save", "save", tooltip="Save the grid as Markdown (as compare-decoding prints it)"
        ),
        Binding("enter", "zoom", "zoom", tooltip="Show the focused cell alone (Escape: the grid again)"),
    ]

    def __init__(
        self,
        model_ref: str,
        prompt: str,
        settings: GenerationSettings,
        *,
        model: GridModel | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.model_ref = model_ref
        self.prompt = prompt
        self.settings = settings
        self.slots = [Slot(label, cell_settings) for label, cell_settings in grid_settings(settings)]
        self.model: GridModel | None = model
        self.own_process: GeneratorProcess | None = None  # started here (ended when the grid closes)
        self.running = False
        self.stop_event = threading.Event()
        self.started = 0.0
        self._closed = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text.assemble(("prompt ▸ ", "bold cyan"), self.prompt), id="prompt-line")
        yield Static("", id="grid-status")
        cells = VerticalScroll(id="cells")
        cells.can_focus = False  # Tab goes from cell to cell
        with cells, Grid(id="grid"):
            for index, slot in enumerate(self.slots):
                yield GridCell(slot, id=f"cell-{index}")
        yield Footer(compact=True)

    @property
    def cells(self) -> list[GridCell]:
        return list(self.query(GridCell))

    def on_mount(self) -> None:
        self.title = "gpt2tui"
        self.sub_title = f"decoding grid · {self.model_ref}"
        self._fit_columns()
        self.set_interval(FLUSH_SECONDS, self._flush, name="grid-flush")
        if self.model is not None:
            self._start()
        else:
            self._status("loading the model…")
            start_daemon(self._load, name="gpt2tui-grid-load")

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Three cells a row from 110 columns (else two); two rows of cells on the screen, at most 11 high."""
        columns = 3 if self.size.width >= WIDE else 2
        height = max(6, min(11, (self.size.height - CHROME_ROWS) // 2))
        grid = self.query_one("#grid", Grid)
        grid.styles.grid_size_columns = columns
        grid.styles.grid_rows = str(height)
        for cell in self.query(GridCell):
            cell.styles.height = height

    def on_unmount(self) -> None:
        self._closed = True
        self.stop_event.set()
        if self.own_process is not None:
            self.own_process.close()

    def _status(self, text: str) -> None:
        self.query_one("#grid-status", Static).update(Text(text, style="dim"))

    # ---- loading and running ---------------------------------------------------------------------

    def _load(self) -> None:
        """In a daemon thread: a child process of the grid's own (or the model in this process)."""
        from gpt2tui.core import generation
        from gpt2tui.ui.libraries import ensure_libraries

        try:
            if in_process_requested():
                ensure_libraries()
                model: GridModel = generation.load(self.model_ref)
            else:
                self.own_process = GeneratorProcess(self.model_ref, getattr(self.app, "log_file", None))
                if self._closed:
                    self.own_process.close()
                    return
                model = self.own_process.wait_loaded()
        except UserError as err:
            self.post_message(GridFailed(-1, str(err)))
        except BaseException as err:  # a broken folder, out of memory...: a sentence, never a crash
            self.post_message(
                GridFailed(-1, f"Could not load '{self.model_ref}': {type(err).__name__}: {err}")
            )
        else:
            self.post_message(GridLoaded(model))

    def on_grid_loaded(self, message: GridLoaded) -> None:
        self.model = message.model
        self._start()

    def _start(self) -> None:
        assert self.model is not None
        for slot in self.slots:
            slot.chunks.clear()
            slot.text, slot.cell, slot.error = "", None, None
        for cell in self.cells:
            cell.border_subtitle = ""
            cell.remove_class("done")
            cell.show()
        self.stop_event = threading.Event()
        self.running = True
        self.started = time.monotonic()
        start_daemon(self._run, self.model, self.stop_event, name="gpt2tui-grid")

    def _run(self, model: GridModel, stop: threading.Event) -> None:
        """In a daemon thread: each cell in turn, its text into its slot's queue as it streams."""
        for index, slot in enumerate(self.slots):
            if stop.is_set():
                break
            try:
                cell = run_cell(model, slot, self.prompt, stop)
            except UserError as err:
                self.post_message(GridFailed(index, str(err)))
            except BaseException as err:  # out of memory, a broken model...
                self.post_message(GridFailed(index, f"{type(err).__name__}: {err}"))
            else:
                self.post_message(CellDone(index, cell))
        self.post_message(GridDone())

    def _flush(self) -> None:
        """Move streamed text into the cells (12 times a second, whatever the token rate)."""
        for slot, cell in zip(self.slots, self.cells, strict=True):
            if slot.chunks:
                pieces = []
                while slot.chunks:
                    pieces.append(slot.chunks.popleft())
                slot.text += "".join(pieces)
                cell.show()
        if self.running:
            done = sum(slot.cell is not None or slot.error is not None for slot in self.slots)
            current = self.slots[min(done, len(self.slots) - 1)].label
            seconds = time.monotonic() - self.started
            self._status(f"cell {done + 1} of {len(self.slots)}: {current} · {seconds:.1f}s · Escape stops")

    def on_cell_done(self, message: CellDone) -> None:
        slot = self.slots[message.index]
        slot.cell = message.cell
        slot.chunks.clear()
        slot.text = message.cell.text
        self.cells[message.index].show()

    def on_grid_failed(self, message: GridFailed) -> None:
        if message.index < 0:
            self._status("")
            self.notify(message.error, title="Model not loaded", severity="error", timeout=8)
            for cell in self.cells:
                cell.update(Text("The model did not load (Escape goes back).", style="dim"))
            return
        self.slots[message.index].error = message.error
        self.cells[message.index].show()

    def on_grid_done(self, _message: GridDone) -> None:
        self.running = False
        cells = [slot.cell for slot in self.slots if slot.cell is not None]
        seconds = sum(cell.seconds for cell in cells)
        how = "stopped" if self.stop_event.is_set() else "done"
        self._status(
            f"{how}: {len(cells)} of {len(self.slots)} cells, {seconds:.1f}s of generation · Tab, Enter: one cell"
        )

    # ---- keys ------------------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Escape: back to the grid from a zoomed cell, else stop the run, else back to the chat."""
        if self.maximized is not None:
            self.minimize()
            return
        if self.running:
            self.stop_event.set()
            self._status("stopping…")
            return
        self.app.pop_screen()

    def action_zoom(self) -> None:
        focused = self.focused
        if isinstance(focused, GridCell):
            self.maximize(focused, container=False)

    def action_rerun(self) -> None:
        if self.running or self.model is None:
            self.notify("The grid is still running; Escape stops it.", severity="warning")
            return
        self._start()

    def action_save(self) -> None:
        cells = [slot.cell for slot in self.slots if slot.cell is not None]
        if not cells:
            self.notify("No cell has finished yet.", severity="warning")
            return
        from datetime import datetime

        from gpt2tui.core.compare import grid_markdown
        from gpt2tui.paths import transcripts_dir

        path = transcripts_dir() / f"{safe_stem(cells[0].model)}-grid-{datetime.now():%Y%m%d-%H%M%S}.md"
        try:
            path.write_text(grid_markdown(self.prompt, cells), encoding="utf-8")
        except OSError as err:
            self.notify(f"Could not save the grid: {err}", title="Not saved", severity="error")
            return
        self.notify(f"Saved {path}", title="Grid saved")


def safe_stem(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def run_cell(model: GridModel, slot: Slot, prompt: str, stop: threading.Event) -> Cell:
    """One cell, streamed into ``slot.chunks``: in the model's child process, or in this one."""
    if isinstance(model, LoadedModel):
        from gpt2tui.core.compare import reply_cell

        return reply_cell(slot.label, model, prompt, slot.settings, stop, slot.chunks.append)
    remote = model.cell(slot.label, prompt, slot.settings, stop)
    for chunk in remote:
        slot.chunks.append(chunk)
    if remote.cell is None:
        raise UserError("The model process sent no figures for the cell.")
    return remote.cell
