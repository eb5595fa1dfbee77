"""The chat's tools: two models side by side, the decoding grid, token probabilities, the max-tokens ladder,
copy, undo, question/answer export and loading a saved transcript.

Fast tests inject the session's tiny model and the fake stream of ``test_ui_chat``; the grid and the
probability colours run the real core on the tiny model, since they are about what it generates.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from rich.segment import Segment
from textual.widgets import OptionList

from gpt2tui.core.compare import decoding_grid
from gpt2tui.core.generation import GenerationSettings, LoadedModel
from gpt2tui.core.generator import GeneratorProcess
from gpt2tui.core.transcripts import read_transcript
from gpt2tui.ui.screens import chat as chat_module
from gpt2tui.ui.screens.chat import ChatScreen, ladder_step
from gpt2tui.ui.screens.grid import GridScreen
from gpt2tui.ui.widgets.chat_pane import ChatPane
from gpt2tui.ui.widgets.dialogs import ConfirmDialog, PickDialog
from gpt2tui.ui.widgets.prompt_input import PromptInput
from tests import test_ui_chat
from tests.screen_text import screen_rows
from tests.test_ui_chat import ROOT, SIZE, SMALLEST, ChatTestApp, FakeStream, send, until

# The fixtures of the chat tests, under the names the tests below ask for.
tiny = test_ui_chat.tiny
fake_stream = test_ui_chat.fake_stream


# ---- two models side by side ------------------------------------------------------------------------


async def test_ctrl_b_adds_a_second_model_that_answers_the_same_prompt_with_the_same_seed(
    tiny: LoadedModel, fake_stream: FakeStream, tiny_model: str
) -> None:
    import shutil

    from gpt2tui.paths import models_dir

    shutil.copytree(models_dir() / tiny_model, models_dir() / "tiny-b")
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=3), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SMALLEST) as pilot:
        await pilot.press("ctrl+b")
        dialog = app.screen
        assert isinstance(dialog, PickDialog)
        choices = dialog.query_one(OptionList)
        offered = [choices.get_option_at_index(i).id for i in range(choices.option_count)]
        assert offered == ["tiny-b"]  # the stored models but the one already in the chat
        await pilot.press("enter")
        await until(pilot, lambda: len(screen.panes) == 2 and screen.panes[1].loaded is not None)
        assert screen.sub_title == "chat with tiny vs tiny-b"
        await send(pilot, screen, "hello both")
        await until(pilot, lambda: all(p.turns and p.turns[-1].reply is not None for p in screen.panes))
        first, second = fake_stream.calls[-2:]
        assert first.prompt == second.prompt
        assert (
            first.settings == second.settings and first.settings.seed is not None
        )  # one seed, drawn for both
        rows = "\n".join(screen_rows(app))
        assert rows.count("tok/s") >= 2  # each pane's status line has its own speed
        for pane in screen.panes:
            assert "r" in pane.transcript.entry_text(pane.turns[-1].reply_entry)
        await pilot.press("ctrl+b")
        await until(pilot, lambda: len(screen.query(ChatPane)) == 1)
        assert screen.panes == [screen.pane] and screen.sub_title == "chat with tiny"
        assert ("information", "Back to tiny alone.") in app.notes


async def test_a_second_model_added_mid_chat_says_it_starts_without_the_earlier_turns(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    """Its replies cannot be compared with the first model's as if both had the same conversation."""
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "first?")
        await send(pilot, screen, "second?")
        second = screen.add_pane("tiny-b", loaded=dataclasses.replace(tiny, name="tiny-b"))
        await until(pilot, lambda: bool(second.query("Transcript")) and bool(second.transcript.plain))
        assert second.transcript.plain.strip() == (
            "This model joins here: it answers from the next prompt on, without the 2 earlier turns "
            "(ctrl+l clears both, to compare them from the start)."
        )


async def test_side_by_side_each_childs_replies_compute_with_half_the_cores_it_planned_alone(
    tiny_model: str,
) -> None:
    """Two real children reply at once: each takes half the cores it found free (both taking them all, their
    OpenMP threads wait on each other's); back to one pane, the first takes them all again."""
    import shutil

    from gpt2tui.paths import models_dir

    shutil.copytree(models_dir() / tiny_model, models_dir() / "tiny-b")
    screen = ChatScreen(
        tiny_model, GenerationSettings(strategy="greedy", seed=1, max_new_tokens=6), mode="raw"
    )
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: screen.loaded is not None, timeout=60)
        await pilot.press("ctrl+b")
        await pilot.press("enter")  # tiny-b, the one other stored model
        await until(pilot, lambda: len(screen.panes) == 2 and screen.panes[1].loaded is not None, timeout=60)
        children = [pane.loaded for pane in screen.panes]
        assert all(isinstance(child, GeneratorProcess) for child in children)
        await send(pilot, screen, "The Sun")
        await until(pilot, lambda: all(pane.turns[-1].reply is not None for pane in screen.panes))
        for pane in screen.panes:
            assert pane.turns[-1].reply.threads == max(1, pane.loaded.planned // 2)
        await pilot.press("ctrl+b")
        await until(pilot, lambda: len(screen.panes) == 1)
        await send(pilot, screen, "The Moon")
        assert screen.turns[-1].reply.threads == children[0].planned


async def test_a_second_model_that_does_not_load_leaves_the_first_one_chatting(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+b")
        assert isinstance(app.screen, PickDialog)
        await pilot.press("tab")
        for key in "no-such-model":
            await pilot.press(key)
        await pilot.press("enter")
        await until(pilot, lambda: len(screen.panes) == 1 and any("did not load" in m for _, m in app.notes))
        error = next(m for s, m in app.notes if s == "error")
        assert error == (
            "The second model did not load, so the chat is back to one model: Could not download "
            "'no-such-model': the Hugging Face Hub cannot be reached and it is not in the local cache; "
            "offline, pick a stored model or type a local save_pretrained folder (ctrl+b)."
        )  # in the chat's keys, not the CLI's 'gpt2tui models list'
        assert not screen.prompt_input.disabled
        await send(pilot, screen, "still here?")
        assert screen.turns[-1].reply is not None


def test_a_load_failure_names_the_chat_keys_not_cli_commands() -> None:
    from gpt2tui.ui.screens.chat import in_chat_terms

    assert (
        in_chat_terms(
            "No stored model named '/x' and no folder at that path; 'gpt2tui models list' shows the stored models."
        )
        == "No stored model named '/x' and no folder at that path; ctrl+b lists the stored models."
    )


# ---- the decoding grid ------------------------------------------------------------------------------


async def test_the_grid_shows_what_compare_decoding_computes(tiny: LoadedModel) -> None:
    settings = GenerationSettings(max_new_tokens=6)
    expected = decoding_grid(tiny, "Who made the sky?", settings)
    grid = GridScreen("tiny", "Who made the sky?", settings, model=tiny)
    async with ChatTestApp(grid).run_test(size=SIZE) as pilot:  # type: ignore[arg-type]
        await until(pilot, lambda: not grid.running and all(s.cell for s in grid.slots), timeout=60)
        assert [slot.cell.text for slot in grid.slots] == [cell.text for cell in expected]  # type: ignore[union-attr]
        assert [slot.label for slot in grid.slots] == [cell.label for cell in expected]
        rows = "\n".join(screen_rows(grid.app))
        assert "─ greedy max=6 ─" in rows and "─ top-p T=1.20 p=0.95 max=6 ─" in rows
        assert "tok/s" in rows and "d2 " in rows and "rep4 " in rows
        assert "done: 7 of 7 cells" in rows


async def test_ctrl_g_opens_the_grid_for_the_prompt_in_the_box_and_escape_comes_back(
    tiny: LoadedModel,
) -> None:
    from gpt2tui.ui.app import GPT2TUIApp

    app = GPT2TUIApp(start_dir=ROOT, warm_up=False)
    async with app.run_test(size=SMALLEST) as pilot:
        chat = ChatScreen("tiny", GenerationSettings(max_new_tokens=4), loaded=tiny)
        await app.push_screen(chat)
        await pilot.press("ctrl+g")
        assert app.screen is chat  # nothing typed, nothing sent yet: a warning, no grid
        chat.query_one("#prompt", PromptInput).value = "Is it raining?"
        await pilot.press("ctrl+g")
        await until(pilot, lambda: isinstance(app.screen, GridScreen))
        grid = app.screen
        assert isinstance(grid, GridScreen) and grid.prompt == "Is it raining?"
        await until(pilot, lambda: not grid.running and grid.slots[-1].cell is not None, timeout=60)
        assert "Is it raining?" in screen_rows(app)[1]
        await pilot.press("tab", "enter")  # the second cell alone
        assert grid.maximized is grid.query_one("#cell-1")
        await pilot.press("escape")
        assert grid.maximized is None and app.screen is grid
        await pilot.press("ctrl+s")
        from gpt2tui.paths import transcripts_dir

        (saved,) = transcripts_dir().glob("*-grid-*.md")
        text = saved.read_text(encoding="utf-8")
        assert (
            text.startswith("# Decoding grid: ") and "> Is it raining?" in text and "── top-p T=1.2" in text
        )
        await pilot.press("escape")
        assert app.screen is chat


async def test_escape_stops_the_grid_mid_cell_and_keeps_what_it_streamed() -> None:
    from tests.snapshot_apps import GRID_REPLIES, ScriptedModel

    model = ScriptedModel(pause_after=3)  # the first cell streams three words, then waits to be stopped
    grid = GridScreen("m", "Tell me a story", GenerationSettings(max_new_tokens=40), model=model)  # type: ignore[arg-type]
    async with ChatTestApp(grid).run_test(size=SIZE) as pilot:  # type: ignore[arg-type]
        await until(pilot, lambda: model.streamed.is_set() and grid.slots[0].text != "", timeout=30)
        await pilot.press("escape")
        await until(pilot, lambda: not grid.running, timeout=30)
        assert grid.app.screen is grid  # stopped, not left
        first = grid.slots[0].cell
        assert first is not None and first.stopped
        assert first.text == " ".join(GRID_REPLIES["greedy"].split(" ")[:3])
        assert all(slot.cell is None for slot in grid.slots[1:])
        await pilot.pause(0.1)
        rows = "\n".join(screen_rows(grid.app))
        assert "stopped: 1 of 7 cells" in rows and "waiting…" in rows, rows
        await pilot.press("escape")
        assert grid.app.screen is not grid


# ---- token probabilities ----------------------------------------------------------------------------


def coloured_segments(pane: ChatPane) -> set[str]:
    """The colour names of the transcript's visible text, as painted (its public ``render_line``)."""
    colours = set()
    for y in range(pane.transcript.size.height):
        for segment in pane.transcript.render_line(y):
            assert isinstance(segment, Segment)
            if segment.text.strip() and segment.style is not None and segment.style.color is not None:
                colours.add(segment.style.color.name)
    return colours


async def test_ctrl_f_colours_each_token_by_probability_with_a_legend_and_back(tiny: LoadedModel) -> None:
    settings = GenerationSettings(strategy="top-p", temperature=1.5, seed=3, max_new_tokens=24)
    screen = ChatScreen("tiny", settings, loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "What is love?")
        turn = screen.turns[-1]
        plain = screen.transcript.entry_text(turn.reply_entry)
        assert turn.reply is not None and len(turn.reply.pieces) == len(turn.reply.tokens) > 0
        before = coloured_segments(screen.pane)
        await pilot.press("ctrl+f")
        await pilot.pause()
        after = coloured_segments(screen.pane)
        assert screen.transcript.entry_text(turn.reply_entry) == plain  # the same text, coloured
        assert (after - before) & {"green", "yellow", "dark_orange", "red"}
        assert "≥.7" in screen_rows(app)[2]  # the legend on the transcript's border
        await send(pilot, screen, "And hate?")  # a new reply is coloured as it finishes
        assert screen.transcript.entry_text(screen.turns[-1].reply_entry).startswith("tiny ▸ ")
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert coloured_segments(screen.pane) == before | (coloured_segments(screen.pane) - after)
        assert "≥.7" not in screen_rows(app)[2]


async def test_a_saved_transcript_has_the_probabilities_when_they_are_shown(tiny: LoadedModel) -> None:
    from gpt2tui.core.transcripts import read_transcript

    screen = ChatScreen("tiny", GenerationSettings(strategy="greedy", max_new_tokens=5), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "Hi")
        await pilot.press("ctrl+f", "ctrl+s")
        assert screen.saved_path is not None
        saved = read_transcript(screen.saved_path).turns[0].replies[0]
        assert saved.probabilities is not None
        assert "".join(text for text, _ in saved.probabilities).startswith(saved.text[:3])
        assert all(0 < p <= 1 for _, p in saved.probabilities)
        assert "- token probabilities: `" in screen.saved_path.read_text(encoding="utf-8")


# ---- max tokens, copy, undo, export, load -------------------------------------------------------------


def test_the_max_tokens_ladder_reaches_every_rung_and_the_default_again() -> None:
    up = [100]
    while up[-1] < 1024:
        up.append(ladder_step(up[-1], 1, 1024))
    assert up == [100, 200, 500, 1000, 1024]
    down = [1024]
    while down[-1] > 1:
        down.append(ladder_step(down[-1], -1, 1024))
    assert down == [1024, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1]
    assert (
        ladder_step(77, 1, 1024) == 100 and ladder_step(77, -1, 1024) == 50
    )  # an exact value from the panel
    assert ladder_step(1024, 1, 1024) == 1024 and ladder_step(1, -1, 1024) == 1


async def test_copy_undo_and_export_from_the_palette(
    tiny: LoadedModel, fake_stream: FakeStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpt2tui.paths import transcripts_dir

    copied: list[str] = []
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
    async with app.run_test(size=SIZE) as pilot:
        await screen.run_action("copy_reply")
        assert ("warning", "Nothing to copy yet.") in app.notes
        await send(pilot, screen, "first?")
        await send(pilot, screen, "second?")
        await screen.run_action("copy_reply")
        assert copied == ["r2w1 r2w2"]
        await screen.run_action("undo")
        assert [t.prompt for t in screen.turns] == ["first?"]
        assert "second?" not in screen.transcript.plain and "r2w1" not in screen.transcript.plain
        assert screen.prompt_input.value == "second?"
        assert ("information", "The last turn is undone; its prompt is back in the box.") in app.notes
        await screen.run_action("export_qa")
        exported = list(transcripts_dir().glob("*-qa.jsonl"))
        assert len(exported) == 1
        rows = [json.loads(line) for line in exported[0].read_text(encoding="utf-8").splitlines()]
        assert rows == [{"question": "first?", "answer": "r1w1 r1w2"}]
        assert any(m.startswith("1 question/answer row in ") for _, m in app.notes)
        assert screen.unsaved
        await screen.run_action("undo")  # the last turn left: nothing remains to lose by leaving
        assert screen.turns == [] and not screen.unsaved


async def test_undo_keeps_a_draft_that_ctrl_z_brings_back(tiny: LoadedModel, fake_stream: FakeStream) -> None:
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "first?")
        await pilot.click("#prompt")
        for key in "my draft":
            await pilot.press(key if key != " " else "space")
        await screen.run_action("undo")
        assert screen.prompt_input.value == "first?"
        assert (
            "information",
            "The last turn is undone; its prompt is back in the box (ctrl+z in the box brings back what you had typed).",
        ) in app.notes
        screen.prompt_input.focus()
        await pilot.press("ctrl+z")
        assert screen.prompt_input.value == "my draft"


async def test_palette_offers_the_commands_without_keys(tiny: LoadedModel) -> None:
    screen = ChatScreen("tiny", loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        for key in "undo the last":
            await pilot.press(key if key != " " else "space")
        await pilot.pause(0.3)
        assert "Chat: Undo the last turn" in "\n".join(screen_rows(screen.app))


async def saved_chat(tiny: LoadedModel) -> Path:
    """A one-turn chat with ``tiny`` ("remember me?"), saved with ctrl+s: its transcript's path."""
    first = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(first).run_test(size=SIZE) as pilot:
        await send(pilot, first, "remember me?")
        await pilot.press("ctrl+s")
    assert first.saved_path is not None
    return first.saved_path


async def test_a_saved_transcript_loads_back_and_the_chat_goes_on_from_it(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    path = await saved_chat(tiny)
    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, screen, "unsaved turn")
        await screen.run_action("load_transcript")
        assert isinstance(app.screen, PickDialog)
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmDialog)  # this chat is unsaved: asked first
        await pilot.press("y")
        await until(pilot, lambda: [t.prompt for t in screen.turns] == ["remember me?"])
        assert "unsaved turn" not in screen.transcript.plain
        assert "r1w1 r1w2" in screen.transcript.plain
        await send(pilot, screen, "and now?")
        assert fake_stream.calls[-1].prompt.count("remember me?") == 1  # the loaded turn is the history
        await pilot.press("ctrl+s")
        assert screen.saved_path == path  # saved back to the transcript it continues


async def test_a_transcript_loaded_into_another_models_chat_keeps_who_wrote_each_reply(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    """Saved again after the chat went on, the loaded replies still name the model that wrote them."""
    path = await saved_chat(tiny)
    other = dataclasses.replace(tiny, name="other")
    screen = ChatScreen("other", GenerationSettings(max_new_tokens=2), loaded=other)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await screen.run_action("load_transcript")
        await pilot.press("enter")
        await until(pilot, lambda: [t.prompt for t in screen.turns] == ["remember me?"])
        await send(pilot, screen, "and now?")
        await pilot.press("ctrl+s")
        assert screen.saved_path == path
    saved = read_transcript(path)
    assert [[r.model for r in turn.replies] for turn in saved.turns] == [["tiny"], ["other"]]
    assert "**tiny:**" in path.read_text(encoding="utf-8")


async def test_the_load_list_leaves_out_saved_grids(tiny: LoadedModel, fake_stream: FakeStream) -> None:
    """A grid saved with ctrl+s sits beside the transcripts but cannot be continued: it is not offered."""
    from gpt2tui.core.compare import Cell, grid_markdown
    from gpt2tui.paths import transcripts_dir

    screen = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
    async with ChatTestApp(screen).run_test(size=SIZE) as pilot:
        await send(pilot, screen, "remember me?")
        await pilot.press("ctrl+s")
    grid = transcripts_dir() / "tiny-grid-20261208-010000.md"
    grid.write_text(
        grid_markdown(
            "a prompt", [Cell("greedy", "tiny", "greedy", 0, "text", 1, 0.1, 10.0, None, None, None, None)]
        ),
        encoding="utf-8",
    )
    assert [name for name, _ in chat_module.saved_transcripts()] == [screen.saved_path.name]


def test_stored_models_offered_for_the_second_pane_leave_out_the_first(tiny_model: str) -> None:
    assert chat_module.stored_models(exclude=tiny_model) == []
    ((name, about),) = chat_module.stored_models()
    assert name == tiny_model and about.startswith("tiny scratch")


async def test_ctrl_o_settings_panel_changes_top_k_for_the_next_reply_and_its_transcript_entry(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    from textual.widgets import Input

    from gpt2tui.ui.widgets.settings_panel import SettingsPanel

    screen = ChatScreen("tiny", GenerationSettings(strategy="top-k", max_new_tokens=2), loaded=tiny)
    app = ChatTestApp(screen)
    async with app.run_test(size=SMALLEST) as pilot:
        await pilot.press("ctrl+o")
        panel = app.screen
        assert isinstance(panel, SettingsPanel)
        top_k = panel.query_one("#top-k", Input)
        top_k.focus()
        top_k.value = "7"
        await pilot.press("enter")
        assert app.screen is screen and screen.settings.top_k == 7
        assert "k=7" in screen.status.plain
        await send(pilot, screen, "which k?")
        assert fake_stream.calls[-1].settings.top_k == 7
        assert "top-k T=0.80 k=7 max=2" in screen.transcript.plain  # the line under the reply
        await pilot.press("ctrl+s")
        assert screen.saved_path is not None
        assert "- top-k: 7" in screen.saved_path.read_text(encoding="utf-8")


async def test_chat_with_from_a_chat_replaces_it_and_asks_first_when_unsaved(
    tiny: LoadedModel, fake_stream: FakeStream
) -> None:
    """Each chat opened over another kept its model loaded in its own process underneath."""
    from tests.test_ui_app import make_app

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        first = ChatScreen("tiny", GenerationSettings(max_new_tokens=2), loaded=tiny)
        await app.push_screen(first)
        depth = len(app.screen_stack)
        await send(pilot, first, "unsaved?")
        app.action_chat_with("tiny-b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")  # stay
        assert app.screen is first
        app.action_chat_with("tiny-b")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen is not first)
        assert app.screen.model_ref == "tiny-b" and first not in app.screen_stack
        assert len(app.screen_stack) == depth  # replaced, not stacked
