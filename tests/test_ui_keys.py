"""Pilot tests of the key map (? and F1 on every screen, read from the screens' bindings) and of q to quit."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Label, Static

from gpt2tui.ui.app import GPT2TUIApp
from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.screens.dataset import DatasetScreen
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.screens.monitor import MonitorScreen
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
from gpt2tui.ui.widgets.key_map import KeyMapDialog
from tests.test_ui_app import SIZE, SMALL, command, make_app, text_of, wait_for
from tests.test_ui_runs import FINISHED_ID, finished_history, write_run


def shown_key_map(app: GPT2TUIApp) -> dict[str, list[tuple[str, str]]]:
    """The open key map as the user reads it: per section title, its (keys, what they do) lines."""
    dialog = app.screen
    assert isinstance(dialog, KeyMapDialog)
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for widget in dialog.query(".key-map-section, .key-map-keys, .key-map-what"):
        if widget.has_class("key-map-section"):
            assert isinstance(widget, Label)
            current = sections.setdefault(text_of(widget), [])
        elif widget.has_class("key-map-keys"):
            assert isinstance(widget, Static)
            current.append((text_of(widget), ""))
        else:
            assert isinstance(widget, Static)
            current[-1] = (current[-1][0], text_of(widget))
    return sections


async def test_question_mark_shows_the_home_keys_and_the_app_keys_and_escape_closes(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        keys = shown_key_map(app)
        assert ("n", "New fine-tune: pick a dataset, set up, start") in keys["This screen (models and runs)"]
        assert ("c", "Chat with the highlighted model (or enter)") in keys["In the models list"]
        assert ("p", "Push the highlighted model to the Hugging Face Hub") in keys["In the models list"]
        everywhere = keys["Everywhere"]
        assert ("ctrl+q", "Quit (asking first if a chat is unsaved)") in everywhere
        assert ("F1 / ?", "Show this key map") in everywhere
        assert ("q", "Quit (when no text field has focus)") in everywhere
        assert "In the runs list" not in keys  # no runs: the list is hidden, and so are its keys
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, KeyMapDialog)
        await pilot.press("question_mark")  # ? again closes it
        assert isinstance(app.screen, HomeScreen)


async def test_a_key_that_does_not_apply_now_is_listed_as_such(home: Path) -> None:
    """A finished run cannot be stopped: its s key is listed, marked as not available now."""
    write_run(home, FINISHED_ID, finished_history([(0, 3.0), (6, 2.9)]))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.screen.query_one("#runs").display), "the run listed")
        await pilot.press("f1")
        runs = dict(shown_key_map(app)["In the runs list"])
        assert runs["s"] == "Stop the highlighted run (it saves a checkpoint and its model) (not now)"
        assert runs["o"] == "Open the highlighted run's monitor (or enter)"


async def test_the_dataset_key_map_and_question_mark_typed_in_a_field(tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, DatasetScreen)
        await pilot.press("question_mark")
        keys = shown_key_map(app)
        assert ("ctrl+l", "Type a file's path (or a folder's, to browse it)") in keys[
            "This screen (new fine-tune · 1/3 dataset)"
        ]
        assert keys["In the folder tree"] == [("backspace", "Browse the parent folder")]
        await pilot.press("escape")
        assert isinstance(app.screen, DatasetScreen)
        await pilot.press("ctrl+l", "question_mark", "q")  # in the path box, ? and q are text
        assert app.screen.query_one("#path", Input).value == "?q"
        assert isinstance(app.screen, DatasetScreen) and app.return_code is None


async def test_the_chat_key_map_comes_from_its_bindings(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_chat_with(tiny_model)
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), "the chat")
        await pilot.press("f1")
        keys = dict(shown_key_map(app)[f"This screen ({app.screen_stack[-2].sub_title})"])
        assert keys["F2"] == "Greedy decoding"
        assert keys["F9"] == "Max new tokens up (… 50, 100, 200 …)"
        assert keys["ctrl+s"] == "Save the transcript as Markdown"
        palette = shown_key_map(app)["In the command palette (ctrl+p), no key of their own"]
        assert ("ctrl+p", "Undo the last turn: its prompt goes back into the prompt box") in palette
        assert (
            "ctrl+p",
            "Copy the last reply to the clipboard: through the terminal (OSC 52), also over SSH",
        ) in (palette)
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)  # escape closed the key map, not the chat


async def test_the_monitor_key_map_comes_from_its_bindings(home: Path) -> None:
    write_run(home, FINISHED_ID, finished_history([(0, 3.0), (6, 2.9)]))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.open_run(FINISHED_ID)
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), "the monitor")
        await pilot.press("question_mark")
        (title, entries), *_ = shown_key_map(app).items()
        assert title.startswith("This screen (run ")
        keys = dict(entries)
        assert keys["c"] == "Chat with it"
        assert "s" not in keys  # a finished run cannot be stopped: hidden here as in the footer
        assert keys["escape"] == "Back"


async def test_the_palette_keys_command_opens_the_key_map() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        keys = command(app, "Keys")
        assert keys is not None and keys.help == "The keys of this screen and of the app (? or F1)"
        keys.callback()
        await pilot.pause()
        assert isinstance(app.screen, KeyMapDialog)


async def test_q_quits_where_no_text_field_has_focus() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 0


async def test_q_over_a_dialog_does_not_quit(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog) and app.return_code is None
        await pilot.press("f1")  # F1 works over a dialog too (? is only for the main screens)
        assert dict(shown_key_map(app)["This screen (ConfirmDialog)"]) == {"y": "Yes", "n / escape": "No"}
        await pilot.press("q")  # closes the key map, back to the question
        assert isinstance(app.screen, ConfirmDialog) and app.return_code is None
