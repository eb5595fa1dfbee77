"""What the terminal shows, as text, read through Textual's public API only.

Each cell belongs to the top widget there (``Screen.get_widget_at``, which knows what covers what and what is
scrolled out of view); that widget's own rendering (``Widget.render_lines``) gives the cell's text. Tests that
check that something is really in view at 80x24 use these rather than the compositor's private strips.
"""

from __future__ import annotations

from textual.app import App
from textual.errors import NoWidget
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget


def _lines(widget: Widget, cache: dict[Widget, list[Strip]]) -> list[Strip]:
    if widget not in cache:
        width, height = widget.outer_size  # the border and padding too, as on screen
        cache[widget] = widget.render_lines(Region(0, 0, width, height))
    return cache[widget]


def _row(app: App[object], y: int, cache: dict[Widget, list[Strip]], only: Widget | None = None) -> str:
    """Screen row ``y``: runs of cells that belong to one widget, each cut from that widget's line."""
    screen = app.screen
    owners: list[Widget | None] = []
    for x in range(screen.size.width):
        try:
            owners.append(screen.get_widget_at(x, y)[0])
        except NoWidget:
            owners.append(None)
    text: list[str] = []
    start = 0
    while start < len(owners):
        widget = owners[start]
        end = start
        while end < len(owners) and owners[end] is widget:
            end += 1
        if widget is None or (only is not None and widget is not only):
            text.append("" if only is not None else " " * (end - start))
        else:
            top, left = widget.region.y, widget.region.x
            lines = _lines(widget, cache)
            strip = lines[y - top] if 0 <= y - top < len(lines) else Strip.blank(widget.region.width)
            text.append(strip.crop(start - left, end - left).text)
        start = end
    return "".join(text)


def screen_rows(app: App[object]) -> list[str]:
    """Every row of the screen as the user sees it."""
    cache: dict[Widget, list[Strip]] = {}
    return [_row(app, y, cache) for y in range(app.screen.size.height)]


def visible_text(app: App[object], widget: Widget) -> str:
    """The part of ``widget`` that is on screen (not covered, not scrolled away), one line per visible row;
    an empty string when none of it shows."""
    cache: dict[Widget, list[Strip]] = {}
    region = widget.region.intersection(Region(0, 0, *app.screen.size))
    rows = (_row(app, y, cache, only=widget) for y in range(region.y, region.bottom))
    return "\n".join(row for row in rows if row)
