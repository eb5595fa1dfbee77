"""The key map: a dialog listing the keys of the screen under it and the App's, read from their bindings.

Nothing here names a screen: the keys come from the bindings that gpt2tui's own classes declare (the screen's,
and those of its lists and fields, each said with where it works) and from the App's, read when the dialog
opens, so every screen is described as it is now (a key the screen disables for now is marked, one it hides is
left out). Textual's own cursor keys for lists and fields are not listed; they work as everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from textual.actions import parse
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.dom import DOMNode
from textual.keys import format_key
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Label, Static

from gpt2tui.ui.widgets.footer import Footer

OWN_PACKAGE = "gpt2tui."
FOCUS_ACTIONS = ("app.focus_next", "app.focus_previous")
"""Textual's own keys worth listing with the App's: moving between a screen's lists and fields."""
KEY_NAMES = {
    "question_mark": "?",
    "escape": "escape",
    "enter": "enter",
    "backspace": "backspace",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "space": "space",
}
DESCRIPTIONS = {
    "command_palette": "Command palette: every screen and action, and a chat per model",
    "app.focus_next": "Next list or field",
    "app.focus_previous": "Previous list or field",
}
"""Better words for keys whose binding describes them tersely (Textual's palette key says 'palette')."""


@dataclass(frozen=True)
class KeyEntry:
    """One line of the key map: the keys (``n / escape``), what they do, and whether they apply now."""

    keys: str
    description: str
    enabled: bool = True


@dataclass(frozen=True)
class KeySection:
    title: str
    entries: tuple[KeyEntry, ...]


def key_name(key: str) -> str:
    """A key as the README and the footer's users read it: ``ctrl+s``, ``F2``, ``?``, ``escape``."""
    if key in KEY_NAMES:
        return KEY_NAMES[key]
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    return format_key(key)


def declared_bindings(node: DOMNode) -> Iterator[Binding]:
    """The bindings gpt2tui's own classes declare in ``node``'s class hierarchy, most derived first, one per
    action (keys of one action joined, ``n,escape``); Textual's widgets' own keys are left out."""
    seen: set[str] = set()
    for cls in type(node).__mro__:
        if not cls.__module__.startswith(OWN_PACKAGE):
            continue
        for item in cls.__dict__.get("BINDINGS", []):
            binding = Binding(*item) if isinstance(item, tuple) else item
            if isinstance(binding, Binding) and binding.action not in seen:
                seen.add(binding.action)
                yield binding


def availability(node: DOMNode, binding: Binding) -> bool | None:
    """What the binding's target says of its action now: True, None (shown but disabled) or False (hidden)."""
    namespace, name, parameters = parse(binding.action)
    target: DOMNode = node
    if namespace == "screen" and isinstance(node, Widget):
        target = node.screen
    elif namespace == "app":
        target = node.app
    return target.check_action(name, parameters)


def describe(binding: Binding) -> str:
    """The fullest words a binding has: its tooltip, else its description, else its action's name."""
    if binding.action in DESCRIPTIONS:
        return DESCRIPTIONS[binding.action]
    text = binding.tooltip or binding.description
    if text:
        return text[0].upper() + text[1:]
    return binding.action.split("(")[0].replace("_", " ").capitalize()


def place_of(widget: Widget) -> str:
    """Where a widget's keys work, as the user sees it: its KEY_MAP_PLACE, else its border title or name."""
    place = getattr(widget, "KEY_MAP_PLACE", None) or widget.border_title
    return str(place) if place else type(widget).__name__


def shown(widget: Widget) -> bool:
    return all(node.display for node in widget.ancestors_with_self if isinstance(node, Widget))


def entries_of(node: DOMNode) -> list[KeyEntry]:
    entries = []
    for binding in declared_bindings(node):
        state = availability(node, binding)
        if state is False:
            continue
        keys = " / ".join(key_name(key.strip()) for key in binding.key.split(","))
        entries.append(KeyEntry(keys, describe(binding), enabled=state is True))
    return entries


def key_map(screen: Screen[object]) -> list[KeySection]:
    """The keys of ``screen``, then those of each of its lists and fields that has keys of its own (titled
    with where they work), the screen's commands that only the palette offers (its ``PALETTE_ONLY``: label,
    help, action), then the App's (with moving the focus)."""
    title = screen.sub_title or screen.title or type(screen).__name__
    sections = [KeySection(f"This screen ({title})", tuple(entries_of(screen)))]
    for widget in screen.query("*"):
        if shown(widget) and any(True for _ in declared_bindings(widget)):
            entries = entries_of(widget)
            if entries:
                sections.append(KeySection(f"In the {place_of(widget)}", tuple(entries)))
    palette_only = getattr(screen, "PALETTE_ONLY", ())
    if palette_only:  # commands with no key: without this section F1 would never mention them
        entries = tuple(KeyEntry("ctrl+p", f"{label}: {help_text}") for label, help_text, _ in palette_only)
        sections.append(KeySection("In the command palette (ctrl+p), no key of their own", entries))
    app = screen.app
    grouped: dict[str, tuple[list[str], Binding]] = {}
    for key, active in screen.active_bindings.items():
        if active.node is app or active.binding.action in FOCUS_ACTIONS:
            grouped.setdefault(active.binding.action, ([], active.binding))[0].append(key)
    everywhere = [
        KeyEntry(" / ".join(key_name(key) for key in keys), describe(binding))
        for keys, binding in grouped.values()
    ]
    return [*sections, KeySection("Everywhere", tuple(everywhere))]


class KeyMapDialog(ModalScreen[None]):
    """The key map of the screen under it; escape, ?, F1 or q close it."""

    CSS_PATH = "key_map.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1,q", "close", "Close", key_display="esc/?/q"),
    ]

    def __init__(self, sections: list[KeySection]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="key-map"):  # scrolls (arrows, PgUp/PgDn) when taller than the terminal
            yield Label("Keys", id="key-map-title")
            for section in self.sections:
                yield Label(section.title, classes="key-map-section")
                if not section.entries:
                    yield Static("no keys of its own", classes="key-map-none")
                for entry in section.entries:
                    with Horizontal(classes="key-map-entry" + ("" if entry.enabled else " -disabled")):
                        yield Static(entry.keys, classes="key-map-keys")
                        what = entry.description + ("" if entry.enabled else " (not now)")
                        yield Static(what, classes="key-map-what")  # wraps under itself, not under the keys
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)
