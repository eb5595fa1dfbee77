"""Pilot tests of the app shell and the home, dataset, setup and monitor screens (chat has its own file).

Runs that train go through the real core (scratch tiny on the Q/A sample, a few seconds on a CPU). Waiting is
done by polling a condition with a generous upper bound, never by sleeping a guessed time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList, Select, Static

from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import OFFLINE_CHOICES
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import TrainConfig, preview
from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens.dataset import COLUMNS_HINT, DatasetScreen
from gpt2tui.ui.screens.dialogs import ConfirmDialog, NameDialog
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.screens.monitor import MonitorScreen
from gpt2tui.ui.screens.setup import SetupScreen

ROOT = Path(__file__).resolve().parent.parent
QA_CSV = ROOT / "sample_data" / "qa.csv"
SIZE = (120, 40)
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


def make_app() -> GPT2TUIApp:
    return GPT2TUIApp(start_dir=ROOT, warm_up=False)


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


async def start_run(
    pilot: Pilot[None], app: GPT2TUIApp, max_steps: int, name: str = "ui-model"
) -> MonitorScreen:
    setup = await open_setup(pilot, app)
    setup.query_one("#max_steps", Input).value = str(max_steps)
    setup.query_one("#name", Input).value = name
    await pilot.press("ctrl+s")
    assert isinstance(app.screen, MonitorScreen), text_of(setup.query_one("#error", Static))
    return app.screen


def test_importing_the_app_does_not_import_torch() -> None:
    code = (
        "import sys, gpt2tui.ui.app; "
        "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


async def test_first_start_explains_what_to_do() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert "No fine-tuned models yet" in text_of(app.screen.query_one("#empty", Static))
        assert "sample_data/qa.csv" in text_of(app.screen.query_one("#empty", Static))
        assert not app.screen.query_one("#models", DataTable).display


async def test_home_lists_stored_models(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert table.row_count == 1
        row = [str(cell) for cell in table.get_row(tiny_model)]
        assert row[0] == "tiny"
        assert row[1] == "scratch (tiny)"
        assert row[2] == "qa.csv (68 rows)"
        assert "→" in row[4]


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
        name_input.value = "renamed"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert [info.name for info in ModelStore().list()] == ["renamed"]
        assert app.screen.selected_name() == "renamed"


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


async def test_dataset_errors_are_the_core_sentences(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    odd = tmp_path / "odd.csv"
    odd.write_text(
        "title,body\n" + "".join(f"Note {i},This is the body of note number {i}.\n" for i in range(300))
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, DatasetScreen)
        error = screen.query_one("#error", Static)

        await pilot.press("ctrl+l")
        screen.query_one("#path", Input).value = str(empty)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(text_of(error)), "the empty-file error")
        assert text_of(error) == f"{empty} is empty: there is no text to train on."

        screen.query_one("#path", Input).value = str(odd)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "odd.csv has no" in text_of(error), "the wrong-columns error")
        with pytest.raises(UserError) as raised:
            preview(DataSpec(str(odd)))
        assert text_of(error) == str(raised.value)
        assert "(its columns are: title, body)" in text_of(error)
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
        assert text_of(error) == "Batch size: Must be greater than or equal to 1."
        assert app.focused is setup.query_one("#batch_size", Input)
        setup.query_one("#batch_size", Input).value = "8"

        setup.query_one("#eval_split", Input).value = "1.5"
        await pilot.press("ctrl+s")
        assert text_of(error) == "Eval split: Must be between 0 and 1 (exclusive)."
        setup.query_one("#eval_split", Input).value = "0.1"

        setup.query_one("#name", Input).value = tiny_model
        await pilot.press("ctrl+s")
        assert text_of(error) == (
            "A model named 'tiny' already exists; choose another --name or delete it with 'gpt2tui models rm tiny'."
        )
        assert app.screen is setup


async def test_setup_says_when_the_hub_is_unreachable() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        setup.query_one("#base_kind", Select).value = "hub"
        hub = setup.query_one("#hub", Static)
        await wait_for(pilot, lambda: hub.has_class("unreachable"), "the Hub probe")
        assert "The Hugging Face Hub cannot be reached" in text_of(hub)
        assert OFFLINE_CHOICES in text_of(hub)
        assert setup.query_one("#base", Input).value == "gpt2"
        assert setup.query_one("#max_steps", Input).value == ""
        assert setup.query_one("#name", Input).value == "qa-gpt2"


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
            "--block-size 4096 is larger than the model's context length (256 tokens)."
        )


async def test_full_finetune_from_the_ui_ends_in_a_stored_model() -> None:
    """The real core end to end: scratch tiny, 20 steps on qa.csv, then the model is on the home screen."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_run(pilot, app, max_steps=20)
        await wait_for(pilot, lambda: monitor.state == "finished", "the run to finish")
        assert monitor.model_name == "ui-model"
        outcome = text_of(monitor.query_one("#outcome", Static))
        assert "Saved as ui-model (20 steps" in outcome
        assert "Press c to chat with it" in outcome
        assert [e.step for e in monitor.evals] == [0, 20]
        assert "before" in text_of(monitor.query_one("#evals", Static))
        assert text_of(monitor.query_one("#sample", Static))  # a sample was generated at the evals
        assert len(monitor.query_one("#plot").points) == 20
        assert "step 20/20" in text_of(monitor.query_one("#progress-text", Static))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        table = app.screen.query_one("#models", DataTable)
        assert [str(c) for c in table.get_row("ui-model")][:3] == [
            "ui-model",
            "scratch (tiny)",
            "qa.csv (68 rows)",
        ]
    meta = json.loads((ModelStore().path_for("ui-model") / "gpt2tui.json").read_text())
    assert meta["steps"] == 20 and meta["stopped"] is False


async def test_stop_key_ends_the_run_and_still_saves() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_run(pilot, app, max_steps=5000)
        await wait_for(pilot, lambda: len(monitor.query_one("#plot").points) >= 2, "two training steps")
        await pilot.press("s")
        assert monitor.state in ("stopping", "finished")  # the save may already be done
        await wait_for(pilot, lambda: monitor.state == "finished", "the stopped run to save")
        assert "stopped early after" in text_of(monitor.query_one("#outcome", Static))
    info = ModelStore().get("ui-model")
    assert info.get("stopped") is True and 2 <= info.get("steps") < 5000


async def test_leaving_the_monitor_during_a_run_asks_first() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_run(pilot, app, max_steps=5000)
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert app.screen is monitor and monitor.state == "running"
        await pilot.press("escape", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), "the way back home after saving")
        assert app.screen.query_one("#models", DataTable).row_count == 1
    assert ModelStore().get("ui-model").get("stopped") is True


async def test_quitting_during_a_run_asks_first_and_saves() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = await start_run(pilot, app, max_steps=5000)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmDialog)
        assert "A fine-tune is running. Quit anyway?" in text_of(app.screen.query_one("#question", Static))
        await pilot.press("n")
        assert app.return_code is None and monitor.state == "running"
        await pilot.press("ctrl+q", "y")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
    assert ModelStore().get("ui-model").get("stopped") is True


async def test_quit_without_a_run_does_not_ask() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")


async def test_a_failed_run_is_a_message_not_a_crash() -> None:
    config = TrainConfig(DataSpec(str(QA_CSV)), base="scratch", max_steps=5, block_size=1000, name="too-long")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        monitor = MonitorScreen(config)
        await app.push_screen(monitor)
        await wait_for(pilot, lambda: monitor.state == "failed", "the run to fail")
        outcome = text_of(monitor.query_one("#outcome", Static))
        assert (
            "The run failed: --block-size 1000 is larger than the model's context length (256 tokens)."
            in outcome
        )
        assert monitor.query_one("#outcome").has_class("error")
        await pilot.press("c")  # nothing to chat with: the key is disabled
        assert app.screen is monitor
        await pilot.press("escape")
        assert not isinstance(app.screen, MonitorScreen)
    assert not ModelStore().exists("too-long")


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
