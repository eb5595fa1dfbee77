"""A wrapped, styled, append-only transcript whose cost per streamed chunk does not grow with its length.

The transcript is a list of *entries* (a prompt, a reply, a note), each a prefix and paragraphs of rich
``Text``. Entries are wrapped once into ``Strip`` lines kept in one list; a ``ScrollView`` paints only the
visible lines. Streaming appends to the *open* entry (always the last one): only that entry's last paragraph
is re-wrapped, from the start of its last wrapped line, and only those lines are replaced at the end of the
list. So an append costs the length of the current line, never the length of the paragraph or the transcript
(``bench/ui_append.py``, ``bench/stream_chat.py`` measure it): a 4,000-token reply with no newline costs the
same per token at its end as at its start. A width change re-wraps everything once.

While a streamed reply runs past the bottom, the transcript scrolls in jumps, as terminals do (xterm's
jump scroll): when the text reaches the last row it scrolls a quarter of the height at once, leaving blank
rows that the next lines fill in place. Scrolling repaints the whole transcript and its scrollbar (and sends
it all over SSH again), about 3 ms of the UI thread each time; a line that fills a blank row repaints only
itself. Scrolling a line at a time cost the chat 2.5x the UI time per streamed token (704 against 283 ms per
1,000 tokens, ``bench/stream_chat.py``).
The blank rows go when the reply ends. ``GPT2TUI_JUMP_SCROLL=0`` scrolls a line at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich.style import Style
from rich.text import Text

try:  # where rich breaks lines; without it an append re-wraps the whole last paragraph (correct, slower)
    from rich._wrap import divide_line
except ImportError:  # pragma: no cover - a future rich that moved it
    divide_line = None
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gpt2tui.ui.visible import visible, visible_text

JUMP_SCROLL_ENV = "GPT2TUI_JUMP_SCROLL"
"""``0``: a streamed reply scrolls the transcript a line at a time instead of in jumps."""
JUMP_FRACTION = 4
"""A jump scrolls this fraction (1/N) of the visible height."""


def jump_lines(height: int) -> int:
    """How many lines a streamed reply scrolls at once in a transcript ``height`` lines high (1: no jumps)."""
    if os.environ.get(JUMP_SCROLL_ENV, "").strip().lower() in ("0", "no", "off", "false"):
        return 1
    return max(1, height // JUMP_FRACTION)


@dataclass
class _Entry:
    """One block of the transcript and where its wrapped lines start."""

    prefix: Text
    style: str
    paragraphs: list[Text] = field(default_factory=list)
    first_line: int = 0  # index in Transcript._strips of the entry's first line
    tail_line: int = 0  # index of the first line of its last paragraph
    wrap_line: int = 0  # index of the last paragraph's last wrapped line: appends re-wrap from here
    wrap_offset: int = 0  # where that line starts in ``paragraph_text`` of the last paragraph
    tail: Text | None = None  # the last paragraph from ``wrap_offset`` on, kept by appends (None: slice it)

    def paragraph_text(self, index: int) -> Text:
        body = self.paragraphs[index]
        return self.prefix + body if index == 0 and self.prefix else body

    @property
    def plain(self) -> str:
        return self.prefix.plain + "\n".join(p.plain for p in self.paragraphs)


class Transcript(ScrollView, can_focus=True):
    """Styled entries, wrapped to the width; the last entry may be open for streaming with :meth:`append`."""

    DEFAULT_CSS = """
    Transcript {
        background: $surface;
        overflow-x: hidden;
        overflow-y: scroll;
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._entries: list[_Entry] = []
        self._strips: list[Strip] = []
        self._open = False
        self._width = 0
        self._height = 0  # the visible lines at the last resize
        self.lines_wrapped = 0
        self._paint: tuple[Style, int, int] | None = None  # set while render_lines paints (style, top, width)
        """How many lines have been produced by wrapping so far: the work counter the tests watch."""

    # ---- reading ---------------------------------------------------------------------------------

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    @property
    def line_count(self) -> int:
        """Wrapped lines (0 until the widget knows its width)."""
        return len(self._strips)

    @property
    def is_open(self) -> bool:
        return self._open

    def entry_text(self, index: int) -> str:
        """The plain text of one entry (prefix included)."""
        return self._entries[index].plain

    @property
    def plain(self) -> str:
        """Everything, one entry per line (tests, copy)."""
        return "\n".join(entry.plain for entry in self._entries)

    # ---- writing ---------------------------------------------------------------------------------

    def write(self, text: str, style: str = "", prefix: Text | str = "") -> int:
        """Add a closed entry (a prompt, a note); returns its index."""
        self.close()
        return self._add(prefix, style, visible(text).split("\n"))

    def open(self, prefix: Text | str = "", style: str = "") -> int:
        """Start an entry that :meth:`append` streams into; returns its index."""
        self.close()
        index = self._add(prefix, style, [""])
        self._open = True
        return index

    def _add(self, prefix: Text | str, style: str, paragraphs: list[str]) -> int:
        prefix_text = Text(prefix) if isinstance(prefix, str) else prefix
        entry = _Entry(prefix_text, style, [Text(piece, style=style) for piece in paragraphs])
        start = entry.first_line = len(self._strips)
        for index in range(len(entry.paragraphs)):
            entry.tail_line = len(self._strips)
            entry.wrap_line, entry.wrap_offset, entry.tail = entry.tail_line, 0, None
            self._strips.extend(self._wrap(entry.paragraph_text(index)))
        self._entries.append(entry)
        self._changed(start, start)
        return len(self._entries) - 1

    def append(self, chunk: str, style: str | None = None) -> None:
        """Append text to the open entry, re-wrapping only its last paragraph's last line."""
        if not self._open:
            raise RuntimeError("Transcript.append needs an open entry")
        if not chunk:
            return
        entry = self._entries[-1]
        old_count = len(self._strips)
        first, *rest = visible(chunk).split("\n")
        entry.paragraphs[-1].append(first, style)
        if entry.tail is not None:
            entry.tail.append(first, style)
        start = self._rewrap_tail(entry)
        for piece in rest:
            paragraph = Text(style=entry.style)
            paragraph.append(piece, style)
            entry.paragraphs.append(paragraph)
            entry.tail_line = entry.wrap_line = len(self._strips)
            entry.wrap_offset, entry.tail = 0, None
            self._rewrap_tail(entry)
        self._changed(start, old_count)

    def _rewrap_tail(self, entry: _Entry) -> int:
        """Re-wrap the last paragraph from its last wrapped line; returns the first line replaced.

        Word wrapping is greedy, so a line that has a line after it never changes when text is added at the
        end: wrapping the text from the start of the last line gives the same lines as wrapping it all. The
        text of that last line is kept in ``entry.tail`` as appends arrive, because slicing it out of the
        whole paragraph copies the paragraph (a 4,000-token reply with no newline made each append 1.4x
        slower at its end than at its start).
        """
        tail = entry.tail
        if tail is None:
            # A copy, never the paragraph itself (which it is for a paragraph with no prefix): appends go to
            # both, and the same object would take each of them twice.
            text = entry.paragraph_text(len(entry.paragraphs) - 1)
            tail = text[entry.wrap_offset :] if entry.wrap_offset else text.copy()
        if divide_line is None or "\t" in tail.plain or self._width <= 0:
            # Tabs change lengths when expanded: wrap it all, every time.
            tail = entry.paragraph_text(len(entry.paragraphs) - 1)
            entry.wrap_offset, entry.wrap_line, entry.tail = 0, entry.tail_line, None
        start = entry.wrap_line
        del self._strips[start:]
        self._strips.extend(self._wrap(tail))
        if divide_line is None or self._width <= 0 or "\t" in tail.plain:
            return start
        breaks = divide_line(tail.plain, self._width, fold=True)
        cut = breaks[-1] if breaks else 0
        entry.wrap_offset += cut
        entry.wrap_line = start + len(breaks)
        entry.tail = tail[cut:] if cut else tail
        if len(self._strips) - start != len(breaks) + 1:  # not the lines expected: wrap it all next time
            entry.wrap_offset, entry.wrap_line, entry.tail = 0, entry.tail_line, None
        return start

    def reset_open(self, style: str | None = None) -> None:
        """Empty the open entry (keeping its prefix), e.g. to replace a 'thinking…' indicator."""
        if not self._open:
            return
        entry = self._entries[-1]
        old_count = len(self._strips)
        if style is not None:
            entry.style = style
        entry.paragraphs = [Text(style=entry.style)]
        del self._strips[entry.first_line :]
        entry.tail_line = entry.first_line
        entry.wrap_line, entry.wrap_offset, entry.tail = entry.tail_line, 0, None
        self._strips.extend(self._wrap(entry.paragraph_text(0)))
        self._changed(entry.first_line, old_count)

    def replace_entry(self, index: int, body: Text) -> None:
        """Give closed entry ``index`` a new body (same prefix): a finished reply coloured, or plain again.

        That entry and those after it are re-wrapped (a reply and its notes), never the ones before it.
        """
        entry = self._entries[index]
        entry.paragraphs = list(visible_text(body).split("\n", allow_blank=True)) or [Text()]
        old_count = len(self._strips)
        start = entry.first_line
        del self._strips[start:]
        self._wrap_entries(index)
        self._changed(start, old_count)

    def close(self) -> None:
        """End streaming into the last entry; the next write starts a new one. The blank rows a jump left
        below it go (the text moves down to the bottom when the transcript was following it)."""
        self._open = False
        self._changed(len(self._strips), len(self._strips))  # no line changed: only the scrollable height

    def truncate(self, index: int) -> None:
        """Remove entry ``index`` and everything after it (regenerating a reply)."""
        if index >= len(self._entries):
            return
        old_count = len(self._strips)
        start = self._entries[index].first_line if index >= 0 else 0
        del self._entries[index:]
        del self._strips[start:]
        self._open = False
        self._changed(start, old_count)

    def clear(self) -> None:
        self._entries.clear()
        self._strips.clear()
        self._open = False
        self.virtual_size = Size(self._width, 0)
        self.scroll_home(animate=False, immediate=True)
        self.refresh()

    # ---- wrapping and painting -------------------------------------------------------------------

    def _wrap(self, text: Text) -> list[Strip]:
        if self._width <= 0:
            return []  # not laid out yet; on_resize wraps everything
        console = self.app.console
        options = console.options.update(width=self._width, highlight=False, no_wrap=False, overflow="fold")
        lines = console.render_lines(text, options, pad=False)
        self.lines_wrapped += len(lines)
        return [Strip(line) for line in lines] or [Strip.blank(0)]

    def _rewrap_all(self) -> None:
        self._strips = []
        self._wrap_entries(0)
        self.virtual_size = Size(self._width, len(self._strips))
        self.refresh()

    def _wrap_entries(self, first: int) -> None:
        """Wrap the entries from ``first`` on, after the lines already in the list."""
        for entry in self._entries[first:]:
            entry.first_line = len(self._strips)
            for index in range(len(entry.paragraphs)):
                entry.tail_line = len(self._strips)
                entry.wrap_line, entry.wrap_offset, entry.tail = entry.tail_line, 0, None
                self._strips.extend(self._wrap(entry.paragraph_text(index)))

    def _changed(self, start: int, old_count: int) -> None:
        """Lines from ``start`` changed (the list had ``old_count`` lines): resize, repaint them, follow.

        An open entry followed past the bottom scrolls in jumps: the scrollable height then runs ahead of the
        lines by up to a jump, and lines that land in those blank rows change nothing but themselves.
        """
        following = self.is_vertical_scroll_end
        count = rows = len(self._strips)
        if self._open and following and count > self._height:
            rows = self.virtual_size.height
            if count > rows:
                rows = count + jump_lines(self._height) - 1
        resized = rows != self.virtual_size.height
        if resized:
            self._set_line_count(rows)
        if max(count, old_count) > start:
            self.refresh_lines(start, max(count, old_count) - start)
        if following and resized:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def _set_line_count(self, count: int) -> None:
        """Resize the scrollable area without a layout of the screen.

        ``virtual_size`` is a layout reactive: assigning it re-lays out the whole screen (about 30 ms at
        120x40), which a streamed reply would do at every new wrapped line. Nothing outside this widget
        depends on its line count (its height comes from the screen, and ``overflow-y: scroll`` keeps the
        scrollbar shown whatever the count), so only the value and the scrollbar's thumb change.
        """
        size = Size(self._width, count)
        if size == self.virtual_size:
            return
        self.set_reactive(Transcript.virtual_size, size)
        if self.show_vertical_scrollbar:
            bar = self.vertical_scrollbar
            bar.window_virtual_size = count
            bar.window_size = self.scrollable_content_region.height
            bar.refresh()

    def on_resize(self) -> None:
        region = self.scrollable_content_region
        width, height = region.width, region.height
        # Shorter (the prompt box grew): a transcript that showed its end still does, and goes on following.
        was_at_end = self.scroll_offset.y >= len(self._strips) - self._height
        self._height = height
        if width != self._width:
            self._width = width
            self._rewrap_all()
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif was_at_end:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def render_lines(self, crop: Region) -> list[Strip]:
        """Paint the visible lines, with the style and geometry read once for all of them.

        ``rich_style`` walks the CSS of every ancestor (about 80 us): read per line it was most of a
        repaint's cost (3 ms of 40 lines at each flush of a streamed reply).
        """
        self._paint = (self.rich_style, self.scroll_offset.y, self.scrollable_content_region.width)
        try:
            return super().render_lines(crop)
        finally:
            self._paint = None

    def render_line(self, y: int) -> Strip:
        style, top, width = self._paint or (
            self.rich_style,
            self.scroll_offset.y,
            self.scrollable_content_region.width,
        )
        index = top + y
        if index >= len(self._strips):
            return Strip.blank(width, style)
        return self._strips[index].crop_extend(0, width, style).apply_style(style)
