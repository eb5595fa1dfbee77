"""The decoding settings panel: what it dismisses with, the one sentence for a bad value (in the panel's own
words, the bad field focused, nothing dismissed), escape, the strategy's unused inputs dimmed, and every
input on screen at 80x24 and 120x40."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, RadioSet, Static

from gpt2tui.core.generation import MAX_SEED, STRATEGIES, GenerationSettings
from gpt2tui.ui.widgets.settings_panel import FIELDS, SettingsPanel

SMALL = (80, 24)
LIMIT = 1024
START = GenerationSettings(
    strategy="top-p", temperature=0.8, top_k=50, top_p=0.95, num_beams=4, max_new_tokens=100, seed=None
)
NOTHING = object()
"""The result before the panel is dismissed."""


class PanelApp(App[None]):
    """A bare app that opens the panel and keeps what it is dismissed with."""

    def __init__(self, settings: GenerationSettings = START, limit: int = LIMIT) -> None:
        super().__init__()
        self.settings = settings
        self.limit = limit
        self.result: Any = NOTHING

    def compose(self) -> ComposeResult:
        yield Static("chat")

    def on_mount(self) -> None:
        self.push_screen(SettingsPanel(self.settings, self.limit), self.keep)

    def keep(self, result: GenerationSettings | None) -> None:
        self.result = result


async def opened(pilot: Pilot[None]) -> SettingsPanel:
    await pilot.pause()
    panel = pilot.app.screen
    assert isinstance(panel, SettingsPanel)
    return panel


async def type_into(pilot: Pilot[None], field_id: str, text: str) -> Input:
    """Focus the field, empty it, and type ``text`` key by key."""
    field = pilot.app.screen.query_one(f"#{field_id}", Input)
    field.focus()
    field.value = ""
    await pilot.pause()
    await pilot.press(*text)
    assert field.value == text
    return field


def error_text(panel: SettingsPanel) -> str:
    content = panel.query_one("#error", Static).content
    return content.plain if isinstance(content, Text) else str(content)


async def test_enter_in_a_field_applies_the_change_and_keeps_every_other_setting() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await type_into(pilot, "top-k", "7")
        await pilot.press("enter")
        await pilot.pause()
        assert app.result == START.replace(top_k=7)
        assert not isinstance(app.screen, SettingsPanel)


async def test_ctrl_s_and_the_apply_button_apply_too() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await type_into(pilot, "temperature", "1.25")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.result == START.replace(temperature=1.25)
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await type_into(pilot, "repetition-penalty", "1.3")
        await pilot.click("#apply")
        await pilot.pause()
        assert app.result == START.replace(repetition_penalty=1.3)


@pytest.mark.parametrize(("typed", "seed"), [("", None), ("42", 42), (str(MAX_SEED), MAX_SEED)])
async def test_a_blank_seed_is_random_each_reply_and_a_number_is_kept(typed: str, seed: int | None) -> None:
    app = PanelApp(START.replace(seed=7))
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        assert panel.query_one("#seed", Input).value == "7"
        await type_into(pilot, "seed", typed)
        await pilot.press("enter")
        await pilot.pause()
        assert app.result == START.replace(seed=seed)


@pytest.mark.parametrize(
    ("field_id", "typed", "sentence"),
    [
        ("top-k", "0", "Top-k must be at least 1, not 0."),
        ("top-k", "2.5", "Top-k must be a whole number, not '2.5'."),
        ("max-new-tokens", "5000", "Max new tokens must be a whole number from 1 to 1024, not '5000'."),
        ("max-new-tokens", "abc", "Max new tokens must be a whole number from 1 to 1024, not 'abc'."),
        ("max-new-tokens", "", "Max new tokens must be a whole number from 1 to 1024, not blank."),
        ("top-p", "1.5", "Top-p must be in (0, 1], not 1.5."),
        ("seed", "-3", f"Seed must be blank (random) or a whole number from 0 to {MAX_SEED}, not '-3'."),
        ("temperature", "abc", "Temperature must be a number, not 'abc'."),
        ("temperature", "0", "Temperature must be at least 0.01, not 0.0."),
        (
            "num-beams",
            "20",
            "Beams must be at most 16 (each beam is a full reply searched in parallel), not 20.",
        ),
        (
            "repetition-penalty",
            "0",
            "Repetition penalty must be from 0.01 to 100 (1 means no penalty), not 0.0.",
        ),
    ],
)
async def test_a_bad_value_is_one_sentence_in_the_panels_words_and_nothing_is_dismissed(
    field_id: str, typed: str, sentence: str
) -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        field = await type_into(pilot, field_id, typed)
        panel.query_one("#strategy", RadioSet).focus()  # the bad field gets the focus back
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert error_text(panel) == sentence
        assert "--" not in error_text(panel)
        assert app.screen is panel and app.result is NOTHING
        assert field.has_focus
        # Fixed, it applies.
        await type_into(pilot, field_id, "1" if field_id != "top-p" else "0.5")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.result, GenerationSettings)


async def test_the_first_bad_field_is_the_one_named_when_several_are_bad() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        await type_into(pilot, "top-p", "2")
        await type_into(pilot, "top-k", "x")
        await pilot.press("enter")
        await pilot.pause()
        assert error_text(panel) == "Top-k must be a whole number, not 'x'."
        assert panel.query_one("#top-k", Input).has_focus and app.result is NOTHING


async def test_escape_cancels_with_none_even_after_edits() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        await opened(pilot)
        await type_into(pilot, "top-k", "7")
        await pilot.press("escape")
        await pilot.pause()
        assert app.result is None
        assert not isinstance(app.screen, SettingsPanel)


async def test_choosing_beam_with_three_beams_gives_those() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        strategy = panel.query_one("#strategy", RadioSet)
        assert strategy.has_focus and strategy.pressed_index == STRATEGIES.index("top-p")
        # The arrows choose, starting from the chosen strategy (top-p): beam is two to the left.
        await pilot.press("left", "left")
        await pilot.pause()
        assert strategy.pressed_index == STRATEGIES.index("beam")
        await type_into(pilot, "num-beams", "3")
        await pilot.press("enter")
        await pilot.pause()
        assert app.result == START.replace(strategy="beam", num_beams=3)


async def test_the_arrows_choose_the_strategy_and_enter_there_applies() -> None:
    app = PanelApp(START.replace(strategy="greedy"))
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        strategy = panel.query_one("#strategy", RadioSet)
        await pilot.press("right", "right", "right", "left")
        await pilot.pause()
        assert strategy.pressed_index == STRATEGIES.index("top-k")
        await pilot.press("enter")
        await pilot.pause()
        assert app.result == START.replace(strategy="top-k")


@pytest.mark.parametrize(
    ("strategy", "dimmed"),
    [
        ("greedy", {"temperature", "top-k", "top-p", "num-beams"}),
        ("beam", {"temperature", "top-k", "top-p"}),
        ("top-k", {"top-p", "num-beams"}),
        ("top-p", {"top-k", "num-beams"}),
    ],
)
async def test_the_inputs_the_strategy_does_not_use_are_dimmed_but_editable(
    strategy: str, dimmed: set[str]
) -> None:
    app = PanelApp(START.replace(strategy=strategy))
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        rows = {field.id: panel.query_one(f"#{field.id}-row") for field in FIELDS}
        assert {name for name, row in rows.items() if row.has_class("unused")} == dimmed
        assert not any(panel.query_one(f"#{name}", Input).disabled for name in dimmed)
        note = panel.query_one("#strategy-note", Static).content
        assert (
            str(note)
            == {
                "greedy": "uses no temperature, top-k, top-p, beams",
                "beam": "uses beams",
                "top-k": "uses temperature and top-k",
                "top-p": "uses temperature and top-p",
            }[strategy]
        )
        if dimmed:  # a dimmed input still takes a value, which is kept
            name = sorted(dimmed)[0]
            attr = next(field.attr for field in FIELDS if field.id == name)
            value = {"temperature": "1.5", "top-k": "9", "top-p": "0.5", "num-beams": "2"}[name]
            await type_into(pilot, name, value)
            await pilot.press("enter")
            await pilot.pause()
            expected = type(getattr(START, attr))(value)
            assert getattr(app.result, attr) == expected


async def test_changing_the_strategy_moves_the_dimming() -> None:
    app = PanelApp()
    async with app.run_test(size=SMALL) as pilot:
        panel = await opened(pilot)
        assert panel.query_one("#top-k-row").has_class("unused")
        await pilot.press("left")  # top-k
        await pilot.pause()
        assert not panel.query_one("#top-k-row").has_class("unused")
        assert panel.query_one("#top-p-row").has_class("unused")


@pytest.mark.parametrize("size", [SMALL, (120, 40)])
async def test_every_field_and_the_error_are_on_screen(size: tuple[int, int]) -> None:
    app = PanelApp()
    async with app.run_test(size=size) as pilot:
        panel = await opened(pilot)
        await type_into(pilot, "num-beams", "20")  # the longest sentence
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen.region
        inputs = [panel.query_one(f"#{field.id}", Input) for field in FIELDS]
        shown = [*inputs, panel.query_one("#strategy"), panel.query_one("#error"), panel.query_one("#apply")]
        for widget in shown:
            region = widget.region
            assert region.area > 0 and screen.contains_region(region), f"{widget.id} at {region}"
        rows = [widget.region.y for widget in inputs]
        assert rows == sorted(set(rows)), "one row per field"
        assert all(widget.region.height == 1 for widget in inputs)
