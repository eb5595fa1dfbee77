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

from gpt2tui.core.generation import GenerationSettings, LoadedModel, Mode
from gpt2tui.ui.widgets.chat_pane import NOTE_STYLE, ChatModel, ChatPane, Turn
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
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
LOADING_PLACEHOLDER = "Loading the model… Enter queues your prompt until it is ready"
QUEUED_PLACEHOLDER = "queued: sent when the model is ready"
QUEUE_DROPPED = "The queued prompt was not sent: the model did not load."
NOT_LOADED_PLACEHOLDER = "The model did not load (Escape goes back)"
KEY_LEGEND = "F2 greedy F3 beam F4 top-k F5 top-p · F6/F7 temp · F8/F9 max tokens"
SCROLL_LEGEND = "PgUp/PgDn scroll"
TOASTS_TOP = 2  # rows above the toasts (chat.tcss puts them at the top): the header and the status line


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

    BINDINGS: ClassVar[list[BindingType]] = [
        # The decoding keys are listed on the transcript's border (KEY_LEGEND), not in the footer.
        _key("f2", "strategy('greedy')", "greedy", "Greedy decoding", show=False),
        _key("f3", "strategy('beam')", "beam", "Beam search", show=False),
        _key("f4", "strategy('top-k')", "top-k", "Top-k sampling", show=False),
        _key("f5", "strategy('top-p')", "top-p", "Top-p sampling", show=False),
        _key("f6", "temperature(-1)", "T−", "Temperature down", show=False),
        _key("f7", "temperature(1)", "T+", "Temperature up", show=False),
        _key("f8", "max_tokens(-1)", "max−", "Max new tokens down (halve)", show=False),
        _key("f9", "max_tokens(1)", "max+", "Max new tokens up (double)", show=False),
        _key("escape", "stop", "stop/back", "Stop the reply (when idle: go back, asking if unsaved)"),
        _key(
            "ctrl+r",
            "regenerate",
            "regen",
            "Regenerate the last reply (with the current mode and decoding settings)",
        ),
        _key("ctrl+t", "toggle_mode", "chat/raw", "Toggle chat / raw completion"),
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
        self.sub_title = f"chat with {self.model_ref}"
        for pane in self.panes:
            pane.transcript.border_title = SCROLL_LEGEND
            pane.transcript.border_subtitle = KEY_LEGEND
        self._show_settings()
        self._show_mode()
        self.screen_layout_refresh_signal.subscribe(self, self._keep_toasts_above_the_prompt)

    def _keep_toasts_above_the_prompt(self, _screen: Screen[object]) -> None:
        """The toasts stop where the prompt box starts, however tall it has grown (the rest scroll in later)."""
        room = max(1, self.prompt_input.region.y - TOASTS_TOP)
        for rack in self.query("ToastRack"):
            rack.styles.max_height = room

    def on_chat_pane_load_failed(self, message: ChatPane.LoadFailed) -> None:
        self.notify(message.error, title="Model not loaded", severity="error", timeout=8)
        self.prompt_input.disabled = True
        self.prompt_input.placeholder = NOT_LOADED_PLACEHOLDER
        if self.queued:
            self.queued.clear()
            message.pane.transcript.write(QUEUE_DROPPED, style=NOTE_STYLE)

    def on_chat_pane_ready(self, message: ChatPane.Ready) -> None:
        loaded = message.pane.loaded
        assert loaded is not None
        if message.pane is self.pane:
            self.sub_title = f"chat with {loaded.name}"
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
        for pane in self.panes:
            pane.send(message, self.mode, self.settings)

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
            name = self.loaded.name
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

    def action_max_tokens(self, direction: int) -> None:
        """Halve or double, between 1 and the model's context length."""
        limit = self.loaded.context_length if self.loaded is not None else 1024
        current = self.settings.max_new_tokens
        value = current * 2 if direction > 0 else current // 2
        self._change_settings(max_new_tokens=min(limit, max(1, value)))

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
        for pane in self.panes:
            if pane.turns:
                pane.regenerate(self.mode, self.settings)

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
        self.notify("Transcript cleared; the conversation starts afresh.")

    def action_save(self) -> None:
        if not self.turns:
            self.notify("Nothing to save yet.", severity="warning")
            return
        try:
            path = save_transcript(self.model_label, self.turns)
        except OSError as err:
            self.notify(f"Could not save the transcript: {err}", title="Not saved", severity="error")
            return
        self.saved_path = path
        self._dirty = False
        self.notify(f"Saved {path}", title="Transcript saved")

    @property
    def model_label(self) -> str:
        return self.loaded.name if self.loaded is not None else self.model_ref


def transcript_markdown(model: str, turns: list[Turn], saved: datetime | None = None) -> str:
    """The conversation as Markdown, with the strategy, parameters and seed of every reply."""
    saved = saved or datetime.now()
    lines = [f"# Chat with {model}", "", f"- Model: `{model}`", f"- Saved: {saved:%Y-%m-%d %H:%M:%S}", ""]
    for number, turn in enumerate(turns, start=1):
        settings = turn.settings
        lines += [f"## {number}. {'Chat' if turn.mode == 'chat' else 'Raw completion'}", ""]
        lines += ["**You:**", "", _quote(turn.prompt), ""]
        lines += [f"**{model}:**", "", _quote(turn.text.strip() or "(no text)"), ""]
        details = [
            f"strategy: {settings.strategy}",
            f"parameters: {settings.describe()}",
            f"temperature: {settings.temperature}",
            f"top-k: {settings.top_k}",
            f"top-p: {settings.top_p}",
            f"beams: {settings.num_beams}",
            f"max new tokens: {settings.max_new_tokens}",
        ]
        if turn.reply is not None:
            details += [
                f"seed: {turn.reply.seed}",
                f"tokens: {turn.reply.new_tokens}",
                f"tokens/s: {turn.reply.tokens_per_second:.1f}",
            ]
            if turn.reply.stopped:
                details.append("stopped by the user (partial reply)")
        if turn.error:
            details.append(f"failed: {turn.error}")
        lines += [f"- {item}" for item in details] + [""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def save_transcript(model: str, turns: list[Turn]) -> Path:
    """Write the transcript under ``transcripts_dir()``; the file name has the model and the time."""
    from gpt2tui.paths import transcripts_dir

    now = datetime.now()
    folder = transcripts_dir()
    stem = f"{re.sub(r'[^A-Za-z0-9._-]', '_', model)}-{now:%Y%m%d-%H%M%S}"
    path = folder / f"{stem}.md"
    counter = 1
    while path.exists():
        counter += 1
        path = folder / f"{stem}-{counter}.md"
    path.write_text(transcript_markdown(model, turns, now), encoding="utf-8")
    return path
