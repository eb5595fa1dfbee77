"""The README's key map lists every key the chat and the grid bind (a key added to a screen and not to the
README fails here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.binding import Binding

from gpt2tui.ui.screens.chat import ChatScreen
from gpt2tui.ui.screens.grid import GridScreen

ROOT = Path(__file__).resolve().parents[1]
README_NAMES = {"pageup": "PgUp", "pagedown": "PgDn"}


def readme_keys(where: str) -> set[str]:
    """Every backticked key in the README key map rows whose first column names ``where``."""
    keys: set[str] = set()
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and where in [part.strip() for part in cells[0].split(",")]:
            keys.update(re.findall(r"`([^`]+)`", cells[1]))
    return keys


@pytest.mark.parametrize(("screen", "where"), [(ChatScreen, "chat"), (GridScreen, "grid")])
def test_every_bound_key_is_in_the_readme_key_map(screen: type, where: str) -> None:
    listed = readme_keys(where)
    assert listed, f"no README key map rows for {where}"
    for binding in screen.BINDINGS:
        assert isinstance(binding, Binding)
        for key in binding.key.split(","):
            shown = README_NAMES.get(key, key.upper() if re.fullmatch(r"f\d+", key) else key)
            assert shown in listed, f"{where}: {shown} ({binding.description}) is not in the README key map"
