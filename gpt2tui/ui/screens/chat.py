"""Chat: talk to a stored model, with tokens streaming in and decoding settings one key away.

The screen owns the prompt, the mode, the decoding settings and the keys; the conversation with the model
(its loading, its turns, the streaming into its transcript) lives in a ``ChatPane`` (``widgets/chat_pane.py``),
so that two panes side by side are a layout change.

Every key is a priority binding (the prompt box has focus almost always). The footer shows the keys that act
on the conversation; the decoding keys F2-F9 are listed on the transcript's bottom border instead, so that all
of them are visible at 80 columns, and the command palette offers every one.

The prompt box takes typing from the start: Enter while a model still loads queues the prompt, and it is sent
once every pane's model is ready (a load failure drops it, with a sentence).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header

from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import HUB_CHOICES, GenerationSettings, LoadedModel, Mode
from gpt2tui.core.transcripts import (
    SavedTurn,
    is_transcript,
    qa_rows,
    read_transcript,
    save_transcript,
    write_qa_jsonl,
)
from gpt2tui.core.transcripts import Transcript as SavedTranscript
from gpt2tui.ui.messages import DecodingGridRequested
from gpt2tui.ui.widgets.chat_pane import NOTE_STYLE, PROBABILITY_LEGEND, ChatModel, ChatPane, Turn
from gpt2tui.ui.widgets.dialogs import ConfirmDialog, PickDialog
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.prompt_input import PromptInput
from gpt2tui.ui.widgets.status_line import StatusLine
from gpt2tui.ui.widgets.transcript import Transcript

TEMPERATURE_STEP = 0.1
TEMPERATURE_RANGE = (0.1, 2.0)
STOP_GRACE_SECONDS = 0.5  # an Escape this soon after a reply ended was meant to stop it: it does not leave
BUSY = "A reply is still being generated; press Escape to stop it."
LEAVE_QUESTION = "The transcript is not saved (ctrl+s saves it). Leave the chat anyway?"
CLEAR_QUESTION = "The transcript is not saved (ctrl+s saves it). Clear it anyway?"
REPLACE_QUESTION = "The transcript is not saved (ctrl+s saves it). Replace it with the loaded one anyway?"
LOADING_PLACEHOLDER = "Loading the model… Enter queues your prompt until it is ready"
QUEUED_PLACEHOLDER = "queued: sent when the model is ready"
QUEUE_DROPPED = "The queued prompt was not sent: the model did not load."
NOT_LOADED_PLACEHOLDER = "The model did not load (Escape goes back)"
SPLIT_NOT_LOADED = "The model did not load, so no second model can answer beside it; Escape goes back."
GRID_NOT_LOADED = "The model did not load, so the decoding grid cannot run; Escape goes back."
KEY_LEGEND = "F2 greedy F3 beam F4 top-k F5 top-p · F6/F7 temp · F8/F9 max tokens"
SPLIT_KEY_LEGEND = "F2-F5 strategy · F6/F7 temp · F8/F9 max"  # a half-width pane's border
SECOND_LEGEND = "ctrl+b: back to one model"
JOINED_LATE = (
    "This model joins here: it answers from the next prompt on, without the {n} earlier {turns} "
    "(ctrl+l clears both, to compare them from the start)."
)
PICK_SECOND = "Chat with a second model side by side (the same prompts, seed and settings):"
SECOND_FAILED = "The second model did not load, so the chat is back to one model: {error}"
CLI_ADVICE = (
    (HUB_CHOICES, "pick a stored model or type a local save_pretrained folder (ctrl+b)"),
    ("'gpt2tui models list' shows the stored models.", "ctrl+b lists the stored models."),
)
"""The core's advice for a model that did not load, in the chat's terms (its keys, not the CLI's commands)."""
SCROLL_LEGEND = "PgUp/PgDn scroll"
TOASTS_TOP = 2  # rows above the toasts (chat.tcss puts them at the top): the header and the status line
MAX_TOKENS_LADDER = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""F8/F9 step along these (the model's context length is the top rung), so every value comes back, 100 too."""
PALETTE_ONLY = (
    ("Copy the last reply to the clipboard", "through the terminal (OSC 52), also over SSH", "copy_reply"),
    ("Undo the last turn", "its prompt goes back into the prompt box", "undo"),
    ("Export the chat as question/answer training data", "a .jsonl file gpt2tui trains on", "export_qa"),
    ("Load a saved transcript", "shows it and continues the conversation from it", "load_transcript"),
)
"""Chat commands offered in the palette without a key of their own (the prompt box's ctrl keys edit text)."""
NOTHING_YET = "Nothing to {what} yet."


class ChatCommands(Provider):
    """Offers every chat key in the command palette (the screen's bindings, with their help)."""

    def _commands(self) -> Iterable[tuple[str, str, str]]:
        screen = self.screen
        if not isinstance(screen, ChatScreen):
            return
        for binding in ChatScreen.BINDINGS:
            assert isinstance(binding, Binding)
            key = binding.key_display or binding.key
            yield f"Chat: {binding.tooltip or binding.description}", f"key {key}", binding.action
        for label, help_text, action in PALETTE_ONLY:
            yield f"Chat: {label}", help_text, action

    async def discover(self) -> Hits:
        for label, help_text, action in self._commands():
            yield DiscoveryHit(label, partial(self.screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, help_text, action in self._commands():
            score = matcher.match(label)
            if score > 0:
                command = partial(self.screen.run_action, action)
                yield Hit(score, matcher.highlight(label), command, help=help_text)


def in_chat_terms(error: str) -> str:
    """A load failure's sentence with the CLI's advice (``gpt2tui models list``) said in the chat's keys."""
    for cli, chat in CLI_ADVICE:
        error = error.replace(cli, chat)
    return error


def _key(key: str, action: str, label: str, tooltip: str, *, show: bool = True) -> Binding:
    """A chat key: priority, because the prompt box has focus almost always and must not swallow it."""
    return Binding(key, action, label, tooltip=tooltip, show=show, priority=True)


class ChatScreen(Screen[None]):
    """A transcript, a prompt, a status line, and keys that change decoding between replies."""

    CSS_PATH = "chat.tcss"
    COMMANDS: ClassVar[set[type[Provider]]] = {ChatCommands}
    AUTO_FOCUS = "#prompt"
    pane_class: ClassVar[type[ChatPane]] = ChatPane
    """What a pane is (a bench measures streaming with a subclass)."""
    PALETTE_ONLY: ClassVar[tuple[tuple[str, str, str], ...]] = PALETTE_ONLY
    """Listed by the key map (F1) too, so that a command with no key is still found there."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # The decoding keys are listed on the transcript's border (KEY_LEGEND), not in the footer.
        _key("f2", "strategy('greedy')", "greedy", "Greedy decoding", show=False),
        _key("f3", "strategy('beam')", "beam", "Beam search", show=False),
        _key("f4", "strategy('top-k')", "top-k", "Top-k sampling", show=False),
        _key("f5", "strategy('top-p')", "top-p", "Top-p sampling", show=False),
        _key("f6", "temperature(-1)", "T−", "Temperature down", show=False),
        _key("f7", "temperature(1)", "T+", "Temperature up", show=False),
        _key("f8", "max_tokens(-1)", "max−", "Max new tokens down (… 50, 100, 200 …)", show=False),
        _key("f9", "max_tokens(1)", "max+", "Max new tokens up (… 50, 100, 200 …)", show=False),
        _key(
            "ctrl+o", "settings", "settings", "Decoding settings: every parameter, exact values", show=False
        ),
        _key("escape", "stop", "stop/back", "Stop the reply (when idle: go back, asking if unsaved)"),
        _key(
            "ctrl+r",
            "regenerate",
            "regen",
            "Regenerate the last reply (with the current mode and decoding settings)",
        ),
        _key("ctrl+t", "toggle_mode", "chat/raw", "Toggle chat / raw completion"),
        _key(
            "ctrl+b",
            "split",
            "2 models",
            "Chat with a second model side by side (again: back to one model)",
            show=False,
        ),
        _key(
            "ctrl+g",
            "grid",
            "grid",
            "Decoding grid: the prompt under every strategy side by side",
            show=False,
        ),
        _key("ctrl+f", "probabilities", "probabilities", "Colour replies by token probability", show=False),
        _key("ctrl+l", "clear", "clear", "Clear the transcript (asking if unsaved)"),
        _key("ctrl+s", "save", "save", "Save the transcript as Markdown"),
        # Scrolling, while typing in the prompt (SCROLL_LEGEND on the transcript's border).
        _key("pageup", "scroll_transcript('page_up')", "page up", "Scroll the transcript up", show=False),
        _key(
            "pagedown",
            "scroll_transcript('page_down')",
            "page down",
            "Scroll the transcript down",
            show=False,
        ),
        _key("ctrl+home", "scroll_transcript('home')", "top", "Scroll to the transcript's start", show=False),
        _key("ctrl+end", "scroll_transcript('end')", "end", "Scroll to the transcript's end", show=False),
    ]

    def __init__(
        self,
        model_ref: str,
        settings: GenerationSettings | None = None,
        *,
        loaded: LoadedModel | None = None,
        mode: Mode = "chat",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.model_ref = model_ref
        self.settings = (settings or GenerationSettings()).validate()
        self.mode: Mode = mode
        self.saved_path: Path | None = None
        self.pane = self.pane_class(model_ref, loaded=loaded)
        """The first (or only) pane: the model the chat was opened with."""
        self.panes: list[ChatPane] = [self.pane]
        self._dirty = False  # transcript changed since the last save
        self.load_failed = False  # the first model did not load: nothing can be asked of it
        self.queued: list[str] = []  # prompts entered while a model loads, sent in order once all are ready

    # ---- layout and start-up ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="panes"):
            yield from self.panes
        yield PromptInput(self._prompt_history(), placeholder=LOADING_PLACEHOLDER, id="prompt")
        yield Footer(compact=True)

    @property
    def transcript(self) -> Transcript:
        return self.pane.transcript

    @property
    def status(self) -> StatusLine:
        return self.pane.status

    @property
    def turns(self) -> list[Turn]:
        return self.pane.turns

    @property
    def active(self) -> Turn | None:
        """The turn being generated in any pane (None when every pane is idle)."""
        return next((pane.active for pane in self.panes if pane.active is not None), None)

    @property
    def loaded(self) -> ChatModel | None:
        return self.pane.loaded

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one("#prompt", PromptInput)

    @property
    def unsaved(self) -> bool:
        """The transcript changed since it was last saved (or cleared): leaving, clearing or quitting asks."""
        return self._dirty

    def _prompt_history(self) -> list[str]:
        """The app's prompt history, shared by every chat of the session (a bare test app: this chat's own)."""
        history = getattr(self.app, "prompt_history", None)
        return history if isinstance(history, list) else []

    def on_mount(self) -> None:
        self.title = "gpt2tui"
        self._show_title()
        self._show_legends()
        self._show_settings()
        self._show_mode()
        self.screen_layout_refresh_signal.subscribe(self, self._keep_toasts_above_the_prompt)

    def _keep_toasts_above_the_prompt(self, _screen: Screen[object]) -> None:
        """The toasts stop where the prompt box starts, however tall it has grown (the rest scroll in later)."""
        room = max(1, self.prompt_input.region.y - TOASTS_TOP)
        for rack in self.query("ToastRack"):
            rack.styles.max_height = room

    def on_chat_pane_load_failed(self, message: ChatPane.LoadFailed) -> None:
        if message.pane is not self.pane:  # the side-by-side model: the chat goes on with the first one
            error = in_chat_terms(message.error)
            self.notify(SECOND_FAILED.format(error=error), title="Model not loaded", severity="error")
            self._remove_pane(message.pane)
            return
        self.notify(message.error, title="Model not loaded", severity="error", timeout=8)
        self.load_failed = True
        self.prompt_input.disabled = True
        self.prompt_input.placeholder = NOT_LOADED_PLACEHOLDER
        if self.queued:
            self.queued.clear()
            message.pane.transcript.write(QUEUE_DROPPED, style=NOTE_STYLE)

    def on_chat_pane_ready(self, message: ChatPane.Ready) -> None:
        loaded = message.pane.loaded
        assert loaded is not None
        self._show_title()
        if self.settings.max_new_tokens > loaded.context_length:
            self.settings = self.settings.replace(max_new_tokens=loaded.context_length)
            self._show_settings()
        if all(pane.loaded is not None for pane in self.panes):
            self._show_mode()
            self.prompt_input.focus()
            self._send_queued()

    def on_chat_pane_reply_ended(self, message: ChatPane.ReplyEnded) -> None:
        """The transcript has the whole reply now: unsaved again, even if ctrl+s saved it while streaming."""
        self._dirty = True
        if message.turn.error:
            self.notify(message.turn.error, title="Generation failed", severity="error", timeout=8)
        self._send_queued()

    # ---- sending ---------------------------------------------------------------------------------

    def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        event.stop()
        message = event.value.strip()
        if not message:
            return
        if any(pane.loaded is None for pane in self.panes):
            self._queue(message)
            return
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        self.prompt_input.accept()
        self._send(message)

    def _send(self, message: str) -> None:
        self._dirty = True
        settings = self._turn_settings()
        for pane in self.panes:
            pane.send(message, self.mode, settings)

    def _turn_settings(self) -> GenerationSettings:
        """The settings of the next reply; side by side, one seed drawn for both panes when none is set, so
        the two models' replies differ by the model alone."""
        if len(self.panes) > 1 and self.settings.seed is None:
            return self.settings.replace(seed=secrets.randbelow(2**31))
        return self.settings

    def _queue(self, message: str) -> None:
        """Enter while a model loads: the prompt waits (said in the box and the loading panes' status)."""
        self.queued.append(message)
        self.prompt_input.accept()
        self.prompt_input.placeholder = QUEUED_PLACEHOLDER
        count = len(self.queued)
        for pane in self.panes:
            if pane.loaded is None:
                pane.status.state = f"loading… ({count} prompt{'s' if count > 1 else ''} queued)"

    def _send_queued(self) -> None:
        """The next queued prompt, once every model is loaded and idle (the rest after its reply)."""
        if self.queued and self.active is None and all(pane.loaded is not None for pane in self.panes):
            self._send(self.queued.pop(0))

    # ---- two models side by side -----------------------------------------------------------------

    def _show_title(self) -> None:
        names = " vs ".join(pane.model_label for pane in self.panes)
        self.sub_title = f"chat with {names}"

    def _show_legends(self) -> None:
        split = len(self.panes) > 1
        for index, pane in enumerate(self.panes):
            pane.transcript.border_title = PROBABILITY_LEGEND if pane.probabilities else SCROLL_LEGEND
            if index == 0:
                pane.transcript.border_subtitle = SPLIT_KEY_LEGEND if split else KEY_LEGEND
            else:
                pane.transcript.border_subtitle = SECOND_LEGEND

    def action_split(self) -> None:
        """ctrl+b: pick a second model to answer beside the first; with two, back to the first alone."""
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        if len(self.panes) > 1:
            self._remove_pane(self.panes[-1])
            self.notify(f"Back to {self.pane.model_label} alone.")
            return
        if self.load_failed:
            self.notify(SPLIT_NOT_LOADED, severity="warning")
            return
        self.app.push_screen(PickDialog(PICK_SECOND, stored_models(self.pane.model_label)), self._add_pane)

    def _add_pane(self, ref: str | None) -> None:
        if ref and self.is_mounted and len(self.panes) == 1:
            self.add_pane(ref)

    def add_pane(self, ref: str, loaded: LoadedModel | None = None) -> ChatPane:
        """A second pane for the model ``ref`` (loaded in its own child process, unless ``loaded`` is given)."""
        pane = self.pane_class(ref, loaded=loaded)
        pane.probabilities = self.pane.probabilities
        if self.turns:  # its replies (and the history it is given) start with the next prompt
            earlier = len(self.turns)
            pane.opening_note = JOINED_LATE.format(n=earlier, turns="turn" if earlier == 1 else "turns")
        self.panes.append(pane)
        self.query_one("#panes", Horizontal).mount(pane)
        self._share_cores()
        self.call_after_refresh(self._split_shown)
        return pane

    def _share_cores(self) -> None:
        """Every pane replies to each prompt, at the same time: their children divide the cores."""
        for pane in self.panes:
            pane.share_cores(len(self.panes))

    def _split_shown(self) -> None:
        self._show_legends()
        self._show_settings()
        self._show_mode()
        self._show_title()

    def _remove_pane(self, pane: ChatPane) -> None:
        if pane is self.pane or pane not in self.panes:
            return
        self.panes.remove(pane)
        pane.remove()
        self._share_cores()
        self._show_legends()
        self._show_title()
        self._show_mode()
        self._send_queued()

    # ---- actions ---------------------------------------------------------------------------------

    def _change_settings(self, **changes: object) -> None:
        self.settings = self.settings.replace(**changes).validate()
        self._show_settings()

    def _show_settings(self) -> None:
        for pane in self.panes:
            pane.status.settings = self.settings

    def _show_mode(self) -> None:
        for pane in self.panes:
            pane.status.mode = self.mode
        if self.loaded is not None:
            name = " and ".join(pane.model_label for pane in self.panes)
            self.prompt_input.placeholder = (
                f"Ask {name} (Enter sends; ctrl+j: new line; ctrl+t: raw completion)"
                if self.mode == "chat"
                else f"Text for {name} to continue (Enter sends; ctrl+j: new line; ctrl+t: chat)"
            )

    def action_strategy(self, strategy: str) -> None:
        self._change_settings(strategy=strategy)

    def action_temperature(self, direction: int) -> None:
        low, high = TEMPERATURE_RANGE
        value = round(self.settings.temperature + direction * TEMPERATURE_STEP, 2)
        self._change_settings(temperature=min(high, max(low, value)))

    def _token_limit(self) -> int:
        """The most new tokens a reply may have: the smallest context of the loaded models."""
        contexts = [pane.loaded.context_length for pane in self.panes if pane.loaded is not None]
        return min(contexts) if contexts else 1024

    def action_max_tokens(self, direction: int) -> None:
        """The next rung of the ladder up or down, between 1 and the models' context length."""
        self._change_settings(
            max_new_tokens=ladder_step(self.settings.max_new_tokens, direction, self._token_limit())
        )

    def action_settings(self) -> None:
        """ctrl+o: every decoding parameter in a panel; the next reply uses what it applies."""
        from gpt2tui.ui.widgets.settings_panel import SettingsPanel

        self.app.push_screen(SettingsPanel(self.settings, self._token_limit()), self._settings_chosen)

    def _settings_chosen(self, settings: GenerationSettings | None) -> None:
        if settings is not None and settings != self.settings:
            self.settings = settings
            self._show_settings()
            self.notify(
                f"The next reply: {settings.describe()}"
                + (f", seed {settings.seed}" if settings.seed is not None else "")
            )

    def action_grid(self) -> None:
        """ctrl+g: the prompt in the box (or the last one sent) under every decoding strategy, side by side."""
        if self.load_failed:
            self.notify(GRID_NOT_LOADED, severity="warning")
            return
        prompt = self.prompt_input.value.strip() or (self.turns[-1].prompt if self.turns else "")
        if not prompt:
            self.notify("Type a prompt first: the grid answers it under every strategy.", severity="warning")
            return
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        self.post_message(DecodingGridRequested(self.model_label, prompt, self.settings, self.pane.loaded))

    def action_probabilities(self) -> None:
        """ctrl+f: colour each reply's tokens by their probability as drawn (a legend on the border)."""
        on = not self.pane.probabilities
        for pane in self.panes:
            pane.show_probabilities(on)
        self._show_legends()
        if on:
            self.notify("Replies coloured by each token's probability as drawn; ctrl+f again: plain.")

    def action_copy_reply(self) -> None:
        replies = [turn.text.strip() for turn in self.turns if turn.text.strip() and turn is not self.active]
        if not replies:
            self.notify(NOTHING_YET.format(what="copy"), severity="warning")
            return
        self.app.copy_to_clipboard(replies[-1])
        self.notify(f"Copied the last reply ({len(replies[-1]):,} characters) through the terminal (OSC 52).")

    def action_undo(self) -> None:
        """Forget the last turn in every pane; its prompt goes back into the box to edit and send again."""
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        undone = [pane.undo() for pane in self.panes]
        turn = undone[0]
        if turn is None:
            self.notify(NOTHING_YET.format(what="undo"), severity="warning")
            return
        self._dirty = bool(self.turns)  # nothing left: nothing to lose by leaving
        box = self.prompt_input
        draft = box.text.strip()
        # An edit, not load_text: the box's own undo (ctrl+z) then brings back what was typed there.
        box.replace(turn.prompt, box.document.start, box.document.end)
        box.move_cursor(box.document.end)
        kept = " (ctrl+z in the box brings back what you had typed)" if draft and draft != turn.prompt else ""
        self.notify(f"The last turn is undone; its prompt is back in the box{kept}.")

    def action_toggle_mode(self) -> None:
        self.mode = "raw" if self.mode == "chat" else "chat"
        self._show_mode()
        if self.mode == "raw":
            self.notify("Raw completion: the model continues your text as is, without the Q/A template.")
        else:
            self.notify("Chat: your message goes into the model's Q/A template, after the conversation.")

    def action_stop(self) -> None:
        """Escape: stop the reply being generated; when idle, go back (asking first if unsaved).

        An Escape that arrives just after a reply ended was meant to stop that reply, so it does nothing.
        Toasts on screen are dismissed too: Escape is the key users press to make things go away.
        """
        self.app.clear_notifications()
        stopped = [pane.stop() for pane in self.panes]
        if any(stopped):
            return
        if time.monotonic() - max(pane.finished_at for pane in self.panes) < STOP_GRACE_SECONDS:
            return
        if self.maximized is not None:  # Escape's usual meaning, which this priority binding hides
            self.minimize()
            return
        if self.app.screen is not self or len(self.app.screen_stack) < 2:
            return
        if self._dirty:
            dialog = ConfirmDialog(LEAVE_QUESTION, yes_label="Leave", no_label="Stay")
            self.app.push_screen(dialog, self._leave_if_confirmed)
            return
        self.app.pop_screen()

    def _leave_if_confirmed(self, leave: bool | None) -> None:
        if leave and self.is_active and self.active is None:
            self.app.pop_screen()

    def action_scroll_transcript(self, where: str) -> None:
        """Page up / page down / start / end of the transcripts, whatever has focus."""
        for pane in self.panes:
            transcript = pane.transcript
            if where == "page_up":
                transcript.scroll_page_up(animate=False)
            elif where == "page_down":
                transcript.scroll_page_down(animate=False)
            elif where == "home":
                transcript.scroll_home(animate=False, x_axis=False)
            else:
                transcript.scroll_end(animate=False, x_axis=False)

    def action_regenerate(self) -> None:
        """Replace the last reply, generated in the current mode with the current settings (not the old ones)."""
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        if self.loaded is None or not self.turns:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        self._dirty = True
        settings = self._turn_settings()
        for pane in self.panes:
            if pane.turns:
                pane.regenerate(self.mode, settings)

    def action_clear(self) -> None:
        """Clear the transcripts and the conversation, asking first when the transcript is not saved."""
        if self._dirty:
            dialog = ConfirmDialog(CLEAR_QUESTION, yes_label="Clear", no_label="Keep")
            self.app.push_screen(dialog, self._clear_if_confirmed)
            return
        self._clear()

    def _clear_if_confirmed(self, clear: bool | None) -> None:
        if clear and self.is_mounted:
            self._clear()

    def _clear(self) -> None:
        for pane in self.panes:
            pane.clear()
        self._dirty = False
        self.saved_path = None  # the next ctrl+s starts a new file: the one saved keeps the old conversation
        self.notify("Transcript cleared; the conversation starts afresh.")

    def action_save(self) -> None:
        """ctrl+s: the transcript as Markdown; saving again rewrites the same file (the toast says which)."""
        if not self.turns:
            self.notify(NOTHING_YET.format(what="save"), severity="warning")
            return
        from gpt2tui.paths import transcripts_dir

        again = self.saved_path is not None
        try:
            path = save_transcript(self.transcript_data(), transcripts_dir(), self.saved_path)
        except OSError as err:
            self.notify(f"Could not save the transcript: {err}", title="Not saved", severity="error")
            return
        self.saved_path = path
        self._dirty = False
        self.notify(f"{'Saved again to' if again else 'Saved'} {path}", title="Transcript saved")

    def transcript_data(self) -> SavedTranscript:
        """The chat as a transcript: each prompt with every pane's reply (a pane opened later joins late)."""
        turns = [SavedTurn(turn.prompt, turn.mode) for turn in self.turns]
        for pane in self.panes:
            replies = pane.saved_replies()
            for turn, reply in zip(turns[len(turns) - len(replies) :], replies, strict=False):
                turn.replies.append(reply)
        return SavedTranscript(models=[pane.model_label for pane in self.panes], turns=turns)

    def action_export_qa(self) -> None:
        """The first model's whole chat answers as question/answer JSONL, next to the saved transcripts."""
        from gpt2tui.paths import transcripts_dir

        stem = (
            self.saved_path.stem if self.saved_path else f"{self.model_label}-{datetime.now():%Y%m%d-%H%M%S}"
        )
        path = transcripts_dir() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', stem)}-qa.jsonl"
        try:
            rows = qa_rows(self.transcript_data())
            write_qa_jsonl(rows, path)
        except UserError as err:
            self.notify(str(err), severity="warning")
            return
        except OSError as err:
            self.notify(f"Could not export the chat: {err}", title="Not exported", severity="error")
            return
        plural = "s" if len(rows) != 1 else ""
        self.notify(
            f"{len(rows)} question/answer row{plural} in {path}; pick it as a dataset to fine-tune on it.",
            title="Exported",
        )

    def action_load_transcript(self) -> None:
        """Pick a saved transcript; it replaces this chat (asking first if unsaved) and the chat goes on."""
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        saved = saved_transcripts()
        if not saved:
            self.notify("No saved transcripts yet (ctrl+s in a chat saves one).", severity="warning")
            return
        dialog = PickDialog("Load a saved transcript:", saved, typed="or a transcript file, then Enter")
        self.app.push_screen(dialog, self._load_chosen)

    def _load_chosen(self, ref: str | None) -> None:
        if not ref or not self.is_mounted:
            return
        from gpt2tui.paths import transcripts_dir

        path = Path(ref).expanduser()
        path = path if path.is_absolute() or path.exists() else transcripts_dir() / ref
        try:
            transcript = read_transcript(path)
        except UserError as err:
            self.notify(str(err), title="Not loaded", severity="error")
            return
        if self._dirty:
            dialog = ConfirmDialog(REPLACE_QUESTION, yes_label="Replace", no_label="Keep")
            self.app.push_screen(dialog, lambda yes: self._show_transcript(transcript, path) if yes else None)
            return
        self._show_transcript(transcript, path)

    def _show_transcript(self, transcript: SavedTranscript, path: Path) -> None:
        if not self.is_mounted or self.active is not None:
            return
        taken = [pane.load_turns(transcript.turns, index) for index, pane in enumerate(self.panes)]
        self.saved_path = path
        self._dirty = False
        self.notify(
            f"Loaded {taken[0]} turn{'s' if taken[0] != 1 else ''} from {path.name}; the chat goes on from there."
        )

    @property
    def model_label(self) -> str:
        return self.loaded.name if self.loaded is not None else self.model_ref


def ladder_step(value: int, direction: int, limit: int) -> int:
    """The rung of :data:`MAX_TOKENS_LADDER` after ``value`` (or before it), with ``limit`` the top rung."""
    rungs = [rung for rung in MAX_TOKENS_LADDER if rung < limit] + [limit]
    if direction > 0:
        return next((rung for rung in rungs if rung > value), limit)
    return next((rung for rung in reversed(rungs) if rung < value), 1)


def saved_transcripts() -> list[tuple[str, str]]:
    """The saved transcripts, newest first, each with its time (the file name is the choice); saved decoding
    grids, in the same folder, are left out (they cannot be continued)."""
    from gpt2tui.paths import transcripts_dir

    try:
        files = sorted(transcripts_dir().glob("*.md"), key=lambda f: f.stat().st_mtime, reverse=True)
    except OSError:
        return []
    files = [f for f in files if is_transcript(f)]
    return [(f.name, f"{datetime.fromtimestamp(f.stat().st_mtime):%Y-%m-%d %H:%M}") for f in files]


def stored_models(exclude: str | None = None) -> list[tuple[str, str]]:
    """The stored models but ``exclude``, newest first, each with a few words on what it is."""
    from gpt2tui.core.store import ModelStore

    models = []
    for info in ModelStore().list():
        if info.name == exclude:
            continue
        meta = info.metadata
        about = f"{meta.scratch_size} scratch" if meta.base_kind == "scratch" else f"from {meta.base or '?'}"
        if meta.perplexity_after is not None:
            about += f" · perplexity {meta.perplexity_after:.1f}"
        models.append((info.name, about))
    return models
