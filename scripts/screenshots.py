"""Write the README's screenshots: one SVG per screen state into docs/screenshots/.

    python scripts/screenshots.py

Each picture is the app driven headless (``App.run_test``) into one of the states the snapshot tests check
(``tests/snapshot_apps/scenes.py``), in a throw-away data home holding that state's fixed world, then saved
with ``App.save_screenshot``. Run it after a change to a screen, with the snapshot update, and commit both.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.snapshot_apps import CONSOLE_WIDTH  # noqa: E402
from tests.snapshot_apps.scenes import SCENES, Scene, make_app  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
WIDE = (120, 40)
SMALL = (80, 24)
SMALL_TOO = ("chat-stopped", "monitor-running")
"""States also shown at 80x24 (the smallest terminal the README promises)."""


async def shoot(scene: Scene, size: tuple[int, int], name: str) -> Path:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        os.environ["GPT2TUI_HOME"] = str(home)
        scene.prepare(home)
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await scene.drive(pilot)
            await pilot.pause()
            path = Path(app.save_screenshot(f"{name}.svg", str(OUT)))
        return path


async def main() -> None:
    os.environ["TZ"] = "UTC"
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # never the network
    os.environ.pop("NO_COLOR", None)  # the pictures are in colour whatever this shell says
    os.environ["COLUMNS"] = str(CONSOLE_WIDTH)  # log lines wrap at their panel, not at this terminal
    time.tzset()
    os.chdir(ROOT)
    OUT.mkdir(parents=True, exist_ok=True)
    for scene in SCENES:
        print(await shoot(scene, WIDE, scene.name))
        if scene.name in SMALL_TOO:
            print(await shoot(scene, SMALL, f"{scene.name}-80x24"))


if __name__ == "__main__":
    asyncio.run(main())
