"""Pilot tests of the home, dataset and setup screens as a new user meets them: the words they use, what fits
at 80×24, honest expectations of a model, and browsing and previewing files by keyboard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from textual.geometry import Region
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Input, Label, OptionList, Static

from gpt2tui.core.data import DataSpec
from gpt2tui.ui.messages import PreviewFinished
from gpt2tui.ui.screens import dataset as dataset_module
from gpt2tui.ui.screens.dataset import DataFileTree, DatasetScreen
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.screens.setup import SetupScreen
from gpt2tui.ui.widgets.dialogs import NameDialog
from tests.conftest import KJV_TXT, QA_CSV
from tests.test_ui_app import ROOT, SIZE, SMALL, make_app, open_path, open_setup, text_of, wait_for


def drawn_lines(widget: Widget) -> list[str]:
    """The lines ``widget`` draws at its current size and scroll position (its border included)."""
    return [strip.text for strip in widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))]


def set_metadata(home: Path, name: str, **fields: Any) -> None:
    path = home / "models" / name / "gpt2tui.json"
    meta = json.loads(path.read_text())
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key].update(value)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------------ home


async def test_the_first_start_steps_wrap_under_their_own_text_at_80x24() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        numbers = list(app.screen.query(".step-number").results(Static))
        steps = list(app.screen.query(".step-text").results(Static))
        assert [text_of(n) for n in numbers] == ["1.", "2.", "3.", "4."]
        second = steps[1]
        assert second.size.height >= 2, "the sample step is longer than 80 columns: it wraps"
        assert second.region.x > numbers[1].region.x  # every line of it starts right of its number
        lines = drawn_lines(second)
        assert lines[0].startswith("press enter on qa.csv") and lines[1].strip()


async def test_at_80x24_the_models_show_the_perplexity_without_scrolling(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert table.scroll_x == 0
        header, row = drawn_lines(table)[1:3]
        assert "perplexity before → after" in header
        assert "tiny" in row and "→" in row


async def test_a_stopped_run_and_a_tiny_scratch_model_say_what_to_expect(tiny_model: str, home: Path) -> None:
    shutil.copytree(home / "models" / tiny_model, home / "models" / "halfway")
    set_metadata(
        home, "halfway", stopped=True, steps=12, base="distilgpt2", base_kind="hub", scratch_size=None
    )
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert str(table.get_row("halfway")[0]) == "halfway (stopped)"
        assert str(table.get_row(tiny_model)[0]) == "tiny"
        expected = app.screen.query_one("#model-expectations", Static)
        table.move_cursor(row=table.get_row_index("halfway"))
        await pilot.pause()
        assert text_of(expected) == "halfway: stopped early at step 12 of 30."
        table.move_cursor(row=table.get_row_index(tiny_model))
        await pilot.pause()
        assert text_of(expected) == (
            "tiny: a tiny model trained from scratch: gibberish is expected at its size (it learns the shape "
            "of its data, not its facts)."
        )


async def test_a_model_trained_on_text_counts_paragraphs(tiny_model: str, home: Path) -> None:
    set_metadata(home, tiny_model, dataset={"path": str(KJV_TXT), "format": "txt", "rows": 50})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert str(table.get_row(tiny_model)[3]) == "kjv_sample.txt (50 paragraphs)"


async def test_rename_to_a_taken_name_says_it_in_the_dialogs_terms(tiny_model: str, home: Path) -> None:
    shutil.copytree(home / "models" / tiny_model, home / "models" / "other")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#models", DataTable).move_cursor(row=0)
        await pilot.press("r")
        assert isinstance(app.screen, NameDialog)
        taken = "tiny" if app.screen.initial == "other" else "other"
        app.screen.query_one("#name", Input).value = taken
        await pilot.press("enter")
        assert text_of(app.screen.query_one("#error", Static)) == (
            f"A model named '{taken}' already exists; choose another name, or delete that model first (d)."
        )


# ------------------------------------------------------------------------------------------ dataset


async def test_ctrl_l_in_the_path_box_selects_the_old_path_so_typing_replaces_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n", "ctrl+l", *"old.csv")
        path = app.screen.query_one("#path", Input)
        assert path.has_focus and path.value == "old.csv"
        await pilot.press("ctrl+l", *"new.csv")  # the box already has focus
        assert path.value == "new.csv"


async def test_a_blank_block_size_is_not_marked_invalid() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        block = app.screen.query_one("#block", Input)
        block.focus()
        await pilot.press("tab")
        assert not block.has_focus and not block.has_class("-invalid")
        block.value = "1"
        await pilot.pause()
        assert block.has_class("-invalid")


async def test_a_refused_block_size_offers_no_way_on(tmp_path: Path) -> None:
    """Block size 0 was refused under the preview, yet "ctrl+n: continue" stayed and ctrl+n went on with 128."""
    app = make_app()
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_path(pilot, app, QA_CSV)
        screen.notify = lambda message, **kwargs: notes.append(str(message))  # type: ignore[method-assign]
        await wait_for(pilot, lambda: screen.summary is not None, "the preview")
        status = screen.query_one("#status", Static)
        assert text_of(status) == "ctrl+n: continue to the fine-tune setup"
        block = screen.query_one("#block", Input)
        block.focus()
        block.value = "0"
        await pilot.press("enter")
        assert (
            text_of(screen.query_one("#error", Static)) == "Block size must be a whole number of at least 2."
        )
        assert text_of(status) == ""
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen is screen and notes[-1] == "Block size must be a whole number of at least 2."


async def test_a_folder_typed_in_the_path_box_clears_the_file_chosen_before(tmp_path: Path) -> None:
    """The tree browses the folder; the old file's error (or preview) no longer stands under the new path."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_path(pilot, app, tmp_path / "missing.txt")
        path = screen.query_one("#path", Input)
        error = screen.query_one("#error", Static)
        await wait_for(pilot, lambda: "No such file" in text_of(error), "the missing file's error")
        path.value = str(QA_CSV)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.summary is not None, "the preview")
        path.focus()
        path.value = str(tmp_path)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.summary is None and not error.display
        assert text_of(screen.query_one("#summary", Static)) == ""
        assert text_of(screen.query_one("#status", Static)) == ""


async def test_highlighting_previews_where_the_cursor_stops_and_enter_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert dataset_module.HIGHLIGHT_DELAY == 0.3
    # A longer rest than the user's, so that a loaded test machine moves through the list within it.
    monkeypatch.setattr(dataset_module, "HIGHLIGHT_DELAY", 2.0)
    previews: list[PreviewFinished] = []

    def record(message: Message) -> None:  # called at each node the message reaches: kept once
        if isinstance(message, PreviewFinished) and all(message is not seen for seen in previews):
            previews.append(message)

    app = make_app()
    async with app.run_test(size=SIZE, message_hook=record) as pilot:
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, DatasetScreen)
        samples = screen.query_one("#samples", OptionList)
        assert samples.has_focus
        await pilot.press("home", "down", "down")  # kjv, notes, prompts: moved through quickly
        await wait_for(pilot, lambda: screen.summary is not None, "the preview of the highlighted file")
        await pilot.pause(0.5)
        names = [Path(p.spec.path).name for p in previews]
        # The files moved through quickly are never previewed (the first one may be, on a slow machine,
        # before the keys arrive).
        assert names[-1] == "prompts.jsonl" and not {"kjv_sample.txt", "notes.jsonl"} & set(names)
        seen = len(previews)
        assert "prompts.jsonl" in text_of(screen.query_one("#summary", Static))
        assert screen.query_one("#path", Input).value.endswith("prompts.jsonl")
        await pilot.press("up", "enter")  # enter previews at once
        await wait_for(pilot, lambda: len(previews) == seen + 1, "the preview on enter")
        assert Path(previews[-1].spec.path).name == "notes.jsonl"


async def test_a_plain_text_preview_counts_paragraphs_and_wraps_once() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        screen.query_one("#samples", OptionList).highlighted = 0  # kjv_sample.txt
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.summary is not None, "the KJV preview")
        summary = text_of(screen.query_one("#summary", Static))
        assert "50 paragraphs · " in summary
        assert "(↵ marks a line break of the file)" in summary
        assert (
            "Genesis 1↵  1 In the beginning God created the heaven and the earth.↵  2 And the earth"
            in summary
        )
        # The file's own line breaks are marks, so the panel wraps the text once: no line is left short
        # because the file broke it (each drawn line but a paragraph's last fills most of the width).
        box = screen.query_one("#summary", Static)
        lines = [line.rstrip() for line in drawn_lines(box)]
        first = next(i for i, line in enumerate(lines) if line.startswith("Genesis 1"))
        body = lines[first : first + 10]
        assert all(len(line) > box.size.width - 20 for line in body)


async def test_dataset_refusals_name_the_screens_field_not_the_cli_option(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("A few words, far too few for two blocks of a hundred and twenty-eight tokens.\n" * 3)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\xe9 cr\xe8me, na\xefve fa\xe7ade.\n".encode("latin-1") * 50)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        error = screen.query_one("#error", Static)
        path = screen.query_one("#path", Input)
        await pilot.press("ctrl+l")
        path.value = str(short)
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(text_of(error)), "the too-short refusal")
        assert "; set the Block size above to " in text_of(error) and text_of(error).endswith(" or less.")
        assert "--block-size" not in text_of(error)
        path.value = str(latin)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "latin.txt is not valid" in text_of(error), "the encoding refusal")
        assert text_of(error).endswith("; save it as UTF-8 text and choose it again.")


async def test_backspace_in_the_tree_browses_the_parent_folder(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "outside.txt").write_text("text\n")
    app = make_app(start_dir=inner)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        tree = screen.query_one("#tree", DataFileTree)
        tree.focus()
        await pilot.press("backspace")
        await wait_for(pilot, lambda: Path(tree.path) == tmp_path.resolve(), "the parent folder")
        await wait_for(pilot, lambda: tree.cursor_node is not None and tree.cursor_line > 0, "the cursor")
        assert text_of(screen.query_one("#browse", Label)) == f"Browse {tmp_path.resolve()}"
        assert tree.cursor_node is not None and tree.cursor_node.data is not None
        assert tree.cursor_node.data.path == inner.resolve()  # on the folder it came from
        labels = [str(tree.get_node_at_line(i).label) for i in range(tree.last_line + 1)]  # type: ignore[union-attr]
        tree.cursor_line = labels.index("outside.txt")  # a file highlighted in the tree is previewed too
        path = screen.query_one("#path", Input)
        await wait_for(pilot, lambda: path.value.endswith("outside.txt"), "the highlighted file chosen")
        error = screen.query_one("#error", Static)
        await wait_for(pilot, lambda: "outside.txt" in text_of(error), "its preview (too short to train on)")


async def test_a_folder_typed_in_the_path_box_is_browsed(tmp_path: Path) -> None:
    app = make_app(start_dir=ROOT)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n", "ctrl+l", *str(tmp_path), "enter")
        screen = app.screen
        tree = screen.query_one("#tree", DataFileTree)
        await wait_for(pilot, lambda: Path(tree.path) == tmp_path.resolve(), "the typed folder")
        assert tree.has_focus and not text_of(screen.query_one("#error", Static))


# ------------------------------------------------------------------------------------------ setup


async def test_blank_optional_setup_fields_stay_valid_after_tab() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = SetupScreen(DataSpec(str(QA_CSV)))
        await app.push_screen(setup)
        for field in ("block_size", "lr"):
            widget = setup.query_one(f"#{field}", Input)
            widget.focus()
            await pilot.press("tab")
            assert widget.value == "" and not widget.has_class("-invalid"), field
        batch = setup.query_one("#batch_size", Input)
        batch.value = ""
        batch.focus()
        await pilot.press("tab")
        assert batch.has_class("-invalid")  # a required field left blank is marked


async def test_setup_says_paragraphs_and_the_offline_choice_in_its_own_terms(home: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        screen = app.screen
        screen.query_one("#samples", OptionList).highlighted = 0  # kjv_sample.txt
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.summary is not None, "the KJV preview")
        await pilot.press("ctrl+n")
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        assert " · 50 paragraphs · " in text_of(setup.query_one("#dataset", Static))


async def test_open_setup_still_works_from_home() -> None:
    """The walkthrough's path (enter on the highlighted qa.csv, ctrl+n) is unchanged by preview on highlight."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        setup = await open_setup(pilot, app)
        assert " · 68 rows · " in text_of(setup.query_one("#dataset", Static))
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, HomeScreen)


def test_control_characters_of_a_file_are_shown_as_symbols_in_the_preview() -> None:
    """A file's escape bytes, drawn raw, would drive the terminal instead of showing what will be trained."""
    from gpt2tui.core.data import DatasetSummary
    from gpt2tui.ui.screens.dataset import render_summary

    for fmt, shown in (("txt", "a␛[2Jb↵c␇"), ("jsonl", "a␛[2Jb\nc␇")):
        summary = DatasetSummary(
            "f", fmt, "text", [], 1, 9, 5, 128, 1, 1, 0, "0", preview=["a\x1b[2Jb\nc\x07"]
        )
        plain = render_summary(summary).plain
        assert shown in plain and "\x1b" not in plain and "\x07" not in plain
