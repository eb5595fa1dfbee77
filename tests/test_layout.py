"""The layout defects found at 80x24 (issue 11), each checked on what the terminal shows (public API only),
plus the README quick start that collided with a TUI run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from tests.screen_text import screen_rows, visible_text
from tests.snapshot_apps import KJV_TXT, LIVE_RUN, ROOT, fix_environment, wait_until, write_model
from tests.snapshot_apps.scenes import LIVE_EVENTS, live_run, make_app, open_monitor

SMALL = (80, 24)


@pytest.fixture
def world(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fix_environment(home, monkeypatch)
    return home


async def test_the_perplexity_column_is_in_view_at_80x24(world: Path) -> None:
    """It was the last column, shown only after → or End."""
    write_model(world)
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        models = app.screen.query_one("#models", DataTable)
        shown = visible_text(app, models)
        assert "perplexity before → after" in shown
        assert "830.3 → 137.1" in shown


async def test_first_start_steps_wrap_under_their_own_text_at_80x24(world: Path) -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        rows = screen_rows(app)
        first = next(i for i, row in enumerate(rows) if "2. press enter on qa.csv" in row)
        indent = rows[first].index("press")
        continued = rows[first + 1]
        assert continued[:indent].strip() == "" and continued[indent] != " ", (rows[first], continued)


async def test_monitor_header_says_cpu_and_fp32(world: Path) -> None:
    """The recorded precision "no" (no mixed precision) reads as fp32, the device "cpu" as CPU."""
    live_run(world)
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await open_monitor(LIVE_RUN, LIVE_EVENTS)(pilot)
        info = " ".join(visible_text(app, app.screen.query_one("#info", Static)).split())
        assert "CPU, 2 threads, fp32 (width 64 < 256: bf16 would not pay)" in info
        assert "(no)" not in info and "cpu" not in info


async def test_kjv_preview_wraps_once_at_the_panel_edge_at_80x24(world: Path) -> None:
    """The file's own line breaks (it is wrapped at ~80 columns) show as ↵ inside one flowing paragraph;
    they used to break the panel's lines too, so every line wrapped twice (a long row, then a stub)."""
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("n")
        screen = app.screen
        samples = screen.query_one("#samples")
        samples.highlighted = next(  # type: ignore[attr-defined]
            i
            for i in range(samples.option_count)  # type: ignore[attr-defined]
            if Path(str(samples.get_option_at_index(i).id)).name == KJV_TXT.name  # type: ignore[attr-defined]
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(screen, "summary", None) is not None, "the KJV preview")
        summary = screen.query_one("#summary", Static)
        text = str(summary.render())
        assert "↵" in text
        width = summary.content_size.width
        rows = [row.rstrip() for row in visible_text(app, summary).splitlines()]
        start = next(i for i, row in enumerate(rows) if row.strip() == "── 1 ──")
        paragraph = [row for row in rows[start + 1 :] if row.strip()]
        if "── 2 ──" in [row.strip() for row in paragraph]:  # its end is in view: its last row may be short
            paragraph = paragraph[: [row.strip() for row in paragraph].index("── 2 ──") - 1]
        assert len(paragraph) >= 2
        for row in paragraph:  # filled to the edge, less at most one word
            assert len(row.strip()) >= width - 16, (width, row)


def test_readme_quick_start_names_its_model() -> None:
    """Without --name, a TUI run of the same file had taken 'qa-scratch-tiny' and the next commands used the
    older model; the quick start trains a model of its own name and uses that name."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
    assert block is not None
    lines = [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]
    train = next(words for words in lines if words[:2] == ["gpt2tui", "train"])
    assert "--name" in train
    name = train[train.index("--name") + 1]
    for words in lines:
        if words[:2] in (["gpt2tui", "generate"], ["gpt2tui", "eval"]):
            assert words[2] == name, words
