"""SVG snapshots of every screen at 80x24 and 120x40, in the states that matter (pytest-textual-snapshot).

The worlds and the keys that reach each state are in ``tests/snapshot_apps/``; nothing in a picture depends on
the machine, the date or the run (see that package's docstring). After an intended change of a screen,
regenerate the pictures with ``pytest tests/test_snapshots.py --snapshot-update`` and look at the diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.snapshot_apps import fix_environment
from tests.snapshot_apps.scenes import SCENES, Scene, make_app

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("scene", SCENES, ids=[scene.name for scene in SCENES])
def test_screen(
    scene: Scene, size: tuple[int, int], snap_compare: Any, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix_environment(home, monkeypatch)
    scene.prepare(home)
    assert snap_compare(make_app(), terminal_size=size, run_before=scene.drive)
