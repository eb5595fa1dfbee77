"""Pilot tests of the app shell and the home, dataset, setup and monitor screens (chat has its own file).

Runs that train go through the real core (scratch tiny on the Q/A sample, a few seconds on a CPU). Waiting is
done by polling a condition with a generous upper bound, never by sleeping a guessed time.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import SystemCommand
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList, Select, Static

from gpt2tui.core import generation
from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, Reply
from gpt2tui.core.generator import IN_PROCESS_ENV
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import preview
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens import chat as chat_module
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.screens.dataset import COLUMNS_HINT, DatasetScreen
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.screens.setup import SetupScreen
from gpt2tui.ui.widgets.dialogs import ConfirmDialog, NameDialog
from gpt2tui.ui.widgets.prompt_input import PromptInput
from tests.screen_text import visible_text

ROOT = Path(__file__).resolve().parent.parent
QA_CSV = ROOT / "sample_data" / "qa.csv"
SIZE = (120, 40)
SMALL = (80, 24)  # the smallest terminal the README promises
WAIT_SECONDS = 120.0  # an upper bound for slow CI machines; the conditions are usually met in a few seconds


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until ``condition()`` holds; fail (with ``what``) only after a generous bound."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def text_of(widget: Static) -> str:
    return str(widget.render())


def walkthrough(app: GPT2TUIApp) -> str:
    """The first-start text of the home screen, its parts (intro, numbered steps, outro) joined."""
    return "\n".join(text_of(part) for part in app.screen.query("#empty Static").results(Static))


def make_app(start_dir: Path = ROOT) -> GPT2TUIApp:
    return GPT2TUIApp(start_dir=start_dir, warm_up=False)


def record_notes(app: GPT2TUIApp) -> list[str]:
    """Every notification the app shows from now on, in order (the toasts themselves vanish after a while)."""
    notes: list[str] = []
    show = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        notes.append(message)
        show(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return notes


def command(app: GPT2TUIApp, title: str) -> SystemCommand | None:
    """The palette's command called ``title`` over the current screen, or None when it is not offered."""
    return next((c for c in app.get_system_commands(app.screen) if c.title == title), None)


async def open_setup(pilot: Pilot[None], app: GPT2TUIApp) -> SetupScreen:
    """home → n → dataset → qa.csv (the first sample) → preview → ctrl+n → setup."""
    await pilot.press("n")
    assert isinstance(app.screen, DatasetScreen)
    samples = app.screen.query_one("#samples", OptionList)
    assert samples.get_option_at_index(samples.highlighted or 0).id == str(QA_CSV)  # highlighted at start
    await pilot.press("enter")
    screen = app.screen
    await wait_for(pilot, lambda: screen.summary is not None, "the qa.csv preview")
    await pilot.press("ctrl+n")
    assert isinstance(app.screen, SetupScreen)
    return app.screen


def test_importing_the_app_does_not_import_torch() -> None:
    code = (
        "import sys, gpt2tui.ui.app; "
        "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


async def test_the_palettes_screenshot_is_saved_in_gpt2tuis_folder(home: Path) -> None:
    """Textual's default, the Downloads folder, is often missing on a server (the palette said only
    'Failed to save screenshot')."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_screenshot()

        def written() -> bool:  # Textual writes the file from a thread: it can exist, still empty
            shots = list((home / "screenshots").glob("*.svg"))
            return bool(shots) and shots[0].read_text(encoding="utf-8").rstrip().endswith("</svg>")

        deadline = time.monotonic() + 10
        while not written() and time.monotonic() < deadline:
            await pilot.pause(0.05)
        (shot,) = (home / "screenshots").glob("*.svg")
        assert shot.read_text(encoding="utf-8").startswith("<svg")


async def test_first_start_explains_what_to_do() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        empty = walkthrough(app)
        assert "No fine-tuned models yet" in empty
        assert "press enter on qa.csv (highlighted; 68 questions" in empty
        assert not app.screen.query_one("#models", DataTable).display


async def test_sample_files_are_offered_outside_the_source_folder(tmp_path: Path) -> None:
    """Started from a folder without sample_data/, the walkthrough still works: the shipped samples are listed."""
    app = make_app(start_dir=tmp_path)
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "press enter on qa.csv" in walkthrough(app)
        await pilot.press("n")
        assert isinstance(app.screen, DatasetScreen)
        samples = app.screen.query_one("#samples", OptionList)
        names = [Path(str(samples.get_option_at_index(i).id)).name for i in range(samples.option_count)]
        assert "qa.csv" in names
        assert samples.get_option_at_index(samples.highlighted or 0).id == str(QA_CSV)
        await pilot.press("ctrl+l", "ctrl+o")
        assert app.focused is samples and not notes


async def test_without_sample_files_the_walkthrough_does_not_promise_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gpt2tui.ui.samples.sample_data_dir", lambda start=None: None)
    app = make_app(start_dir=tmp_path)
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        empty = walkthrough(app)
        assert "qa.csv" not in empty
        assert "pick a .txt, .csv or .jsonl file of your own" in empty
        await pilot.press("n")
        assert not app.screen.query("#samples")
        await pilot.press("ctrl+o")
        assert notes == [
            f"There are no sample files: no sample_data/ folder in {tmp_path.resolve()} or next to gpt2tui."
        ]


async def test_home_lists_stored_models(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert table.row_count == 1
        row = [str(cell) for cell in table.get_row(tiny_model)]
        assert row[0] == "tiny"
        assert "→" in row[1]
        assert row[2] == "scratch (tiny)"
        assert row[3] == "qa.csv (68 rows)"


async def test_a_model_with_bad_metadata_hides_no_other_model(tiny_model: str, home: Path) -> None:
    """An overflowing date and fields of the wrong type once crashed the app at start, every time."""
    import json
    import shutil

    odd = home / "models" / "odd"
    shutil.copytree(home / "models" / tiny_model, odd)
    meta = json.loads((odd / "gpt2tui.json").read_text())
    meta.update(created="9999-12-31T23:59:59-12:00", dataset="qa.csv", perplexity_before="high")
    (odd / "gpt2tui.json").write_text(json.dumps(meta))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert table.row_count == 2
        odd_row = [str(cell) for cell in table.get_row("odd")]
        assert odd_row[0] == "odd" and odd_row[4] == "-" and odd_row[1] == "-"
        assert [str(cell) for cell in table.get_row(tiny_model)][3] == "qa.csv (68 rows)"


async def test_rename_shows_core_errors_in_place_then_renames(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, NameDialog)
        name_input = app.screen.query_one("#name", Input)
        name_input.value = "bad name!"
        await pilot.press("enter")
        assert isinstance(app.screen, NameDialog)
        expected = (
            "'bad name!' is not a valid model name; use 1-80 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
        assert text_of(app.screen.query_one("#error", Static)) == expected
        await pilot.press("backspace")  # an edit takes the refusal of the old name away
        assert text_of(app.screen.query_one("#error", Static)) == ""
        name_input.value = "renamed"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert [info.name for info in ModelStore().list()] == ["renamed"]
        assert app.screen.selected_name() == "renamed"


async def test_rename_to_the_same_name_just_closes(tiny_model: str) -> None:
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, NameDialog)
        await pilot.press("enter")  # the name as offered, unchanged
        assert isinstance(app.screen, HomeScreen)
        assert [info.name for info in ModelStore().list()] == [tiny_model]
        assert not notes


async def test_rename_and_delete_say_an_os_error_instead_of_crashing(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = ModelStore().path_for(tiny_model)

    def cross_device(self: ModelStore, old: str, new: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(folder))

    def denied(self: ModelStore, name: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(ModelStore, "rename", cross_device)
    monkeypatch.setattr(ModelStore, "delete", denied)
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        app.screen.query_one("#name", Input).value = "elsewhere"
        await pilot.press("enter")
        assert isinstance(app.screen, NameDialog)
        expected = f"Could not rename tiny: Invalid cross-device link ({folder})."
        assert text_of(app.screen.query_one("#error", Static)) == expected
        await pilot.press("escape", "d", "y")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen) and app.return_code is None
        assert notes == [f"Could not delete tiny: Permission denied ({folder})."]
        assert app.screen.selected_name() == tiny_model


async def test_delete_asks_first(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Delete the model 'tiny'" in text_of(app.screen.query_one("#question", Static))
        await pilot.press("n")
        assert isinstance(app.screen, HomeScreen)
        assert ModelStore().exists("tiny")
        await pilot.press("d", "y")
        await pilot.pause()
        assert not ModelStore().exists("tiny")
        assert app.screen.query_one("#empty").display


async def open_path(pilot: Any, app: GPT2TUIApp, path: Path) -> DatasetScreen:
    """From home: n, then the path typed in the path box (ctrl+l) and enter."""
    await pilot.press("n")
    screen = app.screen
    assert isinstance(screen, DatasetScreen)
    await pilot.press("ctrl+l")
    screen.query_one("#path", Input).value = str(path)
    await pilot.press("enter")
    return screen


async def test_dataset_errors_are_the_core_sentences(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    odd = tmp_path / "odd.csv"
    odd.write_text(
        "title,body\n" + "".join(f"Note {i},This is the body of note number {i}.\n" for i in range(300))
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_path(pilot, app, empty)
        error = screen.query_one("#error", Static)
        await wait_for(pilot, lambda: bool(text_of(error)), "the empty-file error")
        assert text_of(error) == f"{empty} is empty: there is no text to use."

        screen.query_one("#path", Input).value = str(odd)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "odd.csv has no" in text_of(error), "the wrong-columns error")
        with pytest.raises(UserError) as raised:
            preview(DataSpec(str(odd)))
        assert text_of(error) == f"{raised.value.problem}; choose the columns to train on above."
        assert "(its columns are: title, body)" in text_of(error)
        assert "--text-column" in str(
            raised.value
        )  # the CLI's sentence names its options; the screen does not
        assert screen.query_one("#columns").display
        assert text_of(screen.query_one("#status", Static)) == COLUMNS_HINT
        await pilot.press("ctrl+n")  # refused: no valid preview yet
        assert app.screen is screen

        screen.query_one("#text_column", Select).value = "body"
        await wait_for(pilot, lambda: screen.summary is not None, "the preview with the chosen column")
        assert screen.spec == DataSpec(str(odd), text_column="body")
        assert not error.display
        summary = text_of(screen.query_one("#summary", Static))
        assert "300 rows" in summary
        assert "This is the body of note number 0.<|endoftext|>" in summary


async def test_a_fifo_in_the_dataset_preview_is_refused_without_hanging(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        error = screen.query_one("#error", Static)
        await pilot.press("ctrl+l")
        screen.query_one("#path", Input).value = str(fifo)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(text_of(error)), "the FIFO refusal")
        assert text_of(error) == (
            f"{fifo} is not a regular file (it is a named pipe); choose a .txt, .text, .md, .csv, .jsonl file."
        )
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_dataset_summary_shows_examples_as_trained() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        await pilot.press("escape")
        screen = app.screen
        assert isinstance(screen, DatasetScreen)
        summary = text_of(screen.query_one("#summary", Static))
        assert "format csv · question/answer" in summary
        assert "68 rows" in summary
        assert "blocks of 128 tokens" in summary
        assert "Question: What is at the center of our solar system?\nAnswer: The Sun" in summary
        assert setup.spec == DataSpec("sample_data/qa.csv") or setup.spec.path.endswith("qa.csv")


async def test_setup_refuses_invalid_values_in_place(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        error = setup.query_one("#error", Static)
        assert setup.query_one("#max_steps", Input).value == "200"
        assert setup.query_one("#scratch_size", Select).value == "tiny"
        assert setup.query_one("#name", Input).value == "qa-scratch-tiny"

        setup.query_one("#batch_size", Input).value = "0"
        await pilot.press("ctrl+s")
        assert app.screen is setup
        assert text_of(error) == "Batch size must be a whole number of at least 1."
        assert app.focused is setup.query_one("#batch_size", Input)
        setup.query_one("#batch_size", Input).value = "8"

        setup.query_one("#eval_split", Input).value = "1.5"
        await pilot.press("ctrl+s")
        assert text_of(error) == "Eval split must be a number between 0 and 1 (not 0 or 1)."
        setup.query_one("#eval_split", Input).value = "0.1"

        setup.query_one("#name", Input).value = tiny_model
        await pilot.press("ctrl+s")
        assert text_of(error) == (
            "A model named 'tiny' already exists; change the Name, or delete that model on the home screen (d)."
        )
        assert app.screen is setup


async def test_setup_refuses_a_step_count_no_run_could_reach() -> None:
    """99,999,999,999 steps: the warm-up alone would keep the learning rate near 0 for ever."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
        setup.query_one("#max_steps", Input).value = "99999999999"
        await pilot.press("ctrl+s")
        assert (
            text_of(setup.query_one("#error", Static))
            == "Max steps must be a whole number from 1 to 10,000,000."
        )
        assert app.screen is setup


async def test_setup_refusal_is_visible_at_80x24() -> None:
    """The last field and the error line are below the fold of a 24-row terminal; both must come into view."""
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
        seed = setup.query_one("#seed", Input)
        seed.value = "x"
        await pilot.press("ctrl+s")
        error = setup.query_one("#error", Static)
        await wait_for(pilot, lambda: bool(visible_text(app, error)), "the error on screen")
        assert visible_text(app, error).strip() == "Seed must be a whole number from 0 to 4,294,967,295."
        assert app.focused is seed
        await wait_for(pilot, lambda: "x" in visible_text(app, seed), "the refused field on screen")
        rows = visible_text(app, seed).splitlines()
        assert len(rows) == seed.outer_size.height  # the whole field, not a sliver


async def test_setup_says_when_the_hub_is_unreachable(home: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        setup.query_one("#base_kind", Select).value = "hub"
        hub = setup.query_one("#hub", Static)
        await wait_for(pilot, lambda: hub.has_class("unreachable"), "the Hub probe")
        assert "The Hugging Face Hub cannot be reached" in text_of(hub)
        assert "choose 'local folder' or 'scratch' as the Base above" in text_of(hub)
        assert "--base" not in text_of(hub)  # the screen's own terms, not the CLI's
        assert setup.query_one("#base", Input).value == "gpt2"
        # A pretrained base is fine-tuned by epochs: one explicit choice, the other field off.
        assert setup.query_one("#length", Select).value == "epochs"
        assert (
            setup.query_one("#max_steps", Input).disabled and not setup.query_one("#epochs", Input).disabled
        )
        assert setup.query_one("#name", Input).value == "qa-gpt2"
        # Known unreachable and not in the (empty) cache: refused in place, with the base field focused.
        await pilot.press("ctrl+s")
        assert app.screen is setup
        assert text_of(setup.query_one("#error", Static)) == (
            "gpt2 is not in the local Hugging Face cache and the Hub cannot be reached, so it cannot be "
            "downloaded; choose a cached model, a local folder or scratch."
        )
        assert app.focused is setup.query_one("#base", Input)
        assert not (home / "runs").exists()


async def test_setup_recounts_with_the_chosen_base(tiny_model: str, home: Path) -> None:
    """Tokens and blocks follow the chosen base's tokenizer and block size; a bad choice says why."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        line = setup.query_one("#dataset", Static)
        folder = home / "models" / tiny_model
        expected = preview(DataSpec(str(QA_CSV)), base=str(folder), block_size=64)
        setup.query_one("#base_kind", Select).value = "local"
        setup.query_one("#base", Input).value = str(folder)
        setup.query_one("#block_size", Input).value = "64"
        await pilot.press("tab")  # leaving the field completes the choice
        setup.query_one("#block_size", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "blocks of 64" in text_of(line), "the recount at block size 64")
        assert f"{expected.tokens:,} tokens · {expected.blocks:,} blocks of 64" in text_of(line)
        setup.query_one("#block_size", Input).value = "4096"
        await pilot.press("enter")
        await wait_for(pilot, lambda: line.has_class("unusable"), "the block-size error")
        assert text_of(line).endswith(
            "A block size of 4096 is larger than the model's context length (256 tokens); "
            "set the Block size to 256 or less."
        )


async def test_quit_without_a_run_does_not_ask() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.quit_note is None  # nothing goes on training, so nothing to say after exit


async def test_command_palette_offers_screens_keys_and_models(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Models", "New fine-tune", "Chat", "Rename", "Delete", "Chat with tiny", "Quit"):
            assert title in titles
        assert len(titles) == len(set(titles))  # a screen key that repeats a global command is listed once
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "New fine-tune")
        command.callback()
        await pilot.pause()
        assert isinstance(app.screen, DatasetScreen)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Continue to setup" in titles and "Sample files" in titles


async def test_command_palette_over_a_dialog_offers_only_the_base_commands(tiny_model: str) -> None:
    """Screens pushed from the palette would land on top of the unanswered dialog."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, NameDialog)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Quit" in titles
        for title in ("Models", "New fine-tune", "Chat with tiny", "Rename", "Cancel"):
            assert title not in titles


class GatedStream:
    """Stands in for ``generation.stream``: each reply waits for ``gate`` (or its stop event) before it ends.

    Keeps a chat "generating" for exactly as long as a test needs, without a timing guess.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        prompt: str,
        settings: GenerationSettings,
        stop: Any = None,
        **_: Any,
    ) -> Any:
        gate, stopped = self.gate, stop or threading.Event()

        class Stream:
            reply = Reply(text="ok", new_tokens=1, seconds=0.01)

            def __iter__(self) -> Iterator[str]:
                while not gate.wait(0.01) and not stopped.is_set():
                    pass
                yield "ok"

        return Stream()


async def test_palette_models_leaves_a_chat_the_way_escape_does(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean chat is left; a generating one is not left under the reply; an unsaved one keeps its question."""
    stream = GatedStream()
    monkeypatch.setattr(generation, "stream", stream)
    monkeypatch.setenv(IN_PROCESS_ENV, "1")  # the fake stream runs in this process, so must the model
    monkeypatch.setattr(chat_module, "STOP_GRACE_SECONDS", 0.0)  # the palette is used right after the reply
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_for(pilot, lambda: chat.loaded is not None, "the model to load")
        models = command(app, "Models")
        assert models is not None
        await models.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "the way home from a clean chat")

        await pilot.press("c")
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_for(pilot, lambda: chat.loaded is not None, "the model to load again")
        chat.query_one("#prompt", PromptInput).value = "What is the largest planet?"
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.active is not None, "the reply to start")
        await models.callback()
        assert app.screen is chat and chat.active is not None  # refused, and the reply goes on
        assert notes[-1] == "A reply is being generated; stop it (escape) before leaving the chat."

        stream.gate.set()
        await wait_for(pilot, lambda: chat.active is None, "the reply to end")
        await models.callback()
        await pilot.pause()
        # The transcript is unsaved: the chat asks first, and its question is not popped unanswered.
        assert isinstance(app.screen, ConfirmDialog) and chat in app.screen_stack
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "the way home after the answer")


async def test_library_prints_go_to_the_log_file(home: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        print("noise from a library")
        await wait_for(
            pilot, lambda: app.log_file.is_file() and "noise" in app.log_file.read_text(), "the log"
        )
    assert app.log_file == home / "logs" / "gpt2tui.log"


async def test_warm_up_imports_the_libraries_in_the_background() -> None:
    app = GPT2TUIApp(start_dir=ROOT)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.warm_up_seconds is not None, "the warm-up import")
        assert "torch" in sys.modules and "transformers" in sys.modules


def test_output_from_c_code_goes_to_the_log_not_the_terminal(tmp_path: Path) -> None:
    """Under a real terminal (a pty), writes to file descriptors 1 and 2 land in the log while the app runs.

    (Python-level prints are Textual's to capture while the app runs: test_library_prints_go_to_the_log_file.)
    """
    import os
    import pty

    log = tmp_path / "gpt2tui.log"
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from gpt2tui.ui.app import terminal_output_to\n"
        f"with terminal_output_to(Path({str(log)!r})):\n"
        "    os.write(1, b'from-c-stdout\\n')\n"
        "    os.write(2, b'from-c-stderr\\n')\n"
        "    sys.__stderr__.write('drawn-on-terminal\\n'); sys.__stderr__.flush()\n"
        "os.write(1, b'after-the-app\\n')\n"
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=slave, stdin=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(master)
    terminal = seen.decode(errors="replace")
    assert (
        "after-the-app" in terminal and "drawn-on-terminal" in terminal
    )  # the app's own drawing still works
    assert "from-c-stdout" not in terminal and "from-c-stderr" not in terminal
    logged = log.read_text()
    assert "from-c-stdout" in logged and "from-c-stderr" in logged
