"""Chat: talk to a stored model, with tokens streaming in and decoding settings one key away.

The model is loaded and generates in a child process (``core.generator``): ``generate``'s per-token work is
mostly Python, and in this process it would wait for the GIL whenever the UI thread draws (through the chat
screen, replies streamed at 0.7-0.9x raw ``generate``; on a busy machine, worse). Only text crosses the pipe.
A model injected by a test or a bench, or ``GPT2TUI_CHAT_IN_PROCESS=1``, generates in this process instead.

A daemon thread waits for the load; each reply is read by another that iterates the model's ``reply`` stream
and drops chunks into the turn's queue. Daemon threads rather than Textual thread workers, because
``asyncio.run`` joins the workers' executor on exit: Ctrl+Q would wait for a model to load (or for the
background import it waits on). The screen learns the outcome from its own messages (``ModelLoaded``,
``ReplyFinished``, ...), never from a worker's state.

The reply's first text is drawn the moment it arrives (``ReplyStarted``); after that a 12 Hz timer drains the
queue into the transcript: one small append per tick whatever the token rate, never more than the current
paragraph re-wrapped (see ``widgets/transcript.py``), and no layout of the screen. The generator hands text
over 25 times a second at most (``batch_seconds``), so the reading threads do not wake for every token. The
timer runs only while a reply does. Escape sets the reply's stop event; generation ends at the next token and
keeps the partial text.

Every key is a priority binding (the prompt Input has focus almost always). The footer shows the keys that act
on the conversation; the decoding keys F2-F9 are listed on the transcript's bottom border instead, so that all
of them are visible at 80 columns, and the command palette offers every one.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input

from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, LoadedModel, Mode, Reply
from gpt2tui.core.generator import GeneratorProcess, in_process_requested
from gpt2tui.ui.widgets.dialogs import ConfirmDialog
from gpt2tui.ui.widgets.footer import Footer
from gpt2tui.ui.widgets.status_line import StatusLine
from gpt2tui.ui.widgets.transcript import Transcript

ChatModel = LoadedModel | GeneratorProcess
"""What the chat talks to: a model in a child process (the default), or one in this process (injected by
tests and benches, or with GPT2TUI_CHAT_IN_PROCESS=1)."""

FLUSH_SECONDS = 1 / 12  # how often streamed text reaches the transcript (the first text: at once)
READ_SECONDS = 1 / 25  # how often the core hands streamed text over (one chunk per batch of tokens)
TEMPERATURE_STEP = 0.1
TEMPERATURE_RANGE = (0.1, 2.0)
STOP_GRACE_SECONDS = 0.5  # an Escape this soon after a reply ended was meant to stop it: it does not leave
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
BUSY = "A reply is still being generated; press Escape to stop it."
LEAVE_QUESTION = "The transcript is not saved (ctrl+s saves it). Leave the chat anyway?"
KEY_LEGEND = "F2 greedy F3 beam F4 top-k F5 top-p · F6/F7 temp · F8/F9 max tokens"
SCROLL_LEGEND = "PgUp/PgDn scroll"

PROMPT_STYLE = "bold"
REPLY_PREFIX_STYLE = "bold green"
THINKING_STYLE = "italic dim"
META_STYLE = "dim"
STOPPED_STYLE = "bold yellow"
ERROR_STYLE = "bold red"
NOTE_STYLE = "italic"


class ModelLoaded(Message):
    """The load worker finished: the model is ready."""

    def __init__(self, loaded: ChatModel) -> None:
        super().__init__()
        self.loaded = loaded


class ModelLoadFailed(Message):
    """The load worker failed; ``error`` is a sentence for the user."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReplyStarted(Message):
    """The reply's first chunk is queued: shown at once, not at the next flush tick (up to 83 ms later)."""

    def __init__(self, turn: Turn) -> None:
        super().__init__()
        self.turn = turn


class ReplyFinished(Message):
    """A reply's stream ended (fully or stopped); its chunks are already in the turn's queue."""

    def __init__(self, turn: Turn, reply: Reply) -> None:
        super().__init__()
        self.turn = turn
        self.reply = reply


class ReplyFailed(Message):
    """Generating a reply raised; ``error`` is a sentence for the user."""

    def __init__(self, turn: Turn, error: str) -> None:
        super().__init__()
        self.turn = turn
        self.error = error


@dataclass(eq=False)
class Turn:
    """One prompt and its reply, as shown in the transcript and saved as Markdown."""

    prompt: str
    mode: Mode
    prompt_entry: int  # transcript entry of the prompt
    reply_entry: int = -1  # transcript entry of the reply; regenerate truncates from here
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    text: str = ""  # what has been shown so far
    reply: Reply | None = None
    error: str | None = None
    waiting: bool = True  # no chunk shown yet: the 'thinking…' indicator is up
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    chunks: deque[str] = field(default_factory=deque)  # filled by the worker, drained by the flush timer


def start_daemon(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    """Run ``target(*args)`` in a daemon thread: the app may exit without waiting for it."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


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
    """A chat key: priority, because the prompt Input has focus almost always and must not swallow it."""
    return Binding(key, action, label, tooltip=tooltip, show=show, priority=True)


class ChatScreen(Screen[None]):
    """A transcript, a prompt, a status line, and keys that change decoding between replies."""

    CSS_PATH = "chat.tcss"
    COMMANDS: ClassVar[set[type[Provider]]] = {ChatCommands}
    AUTO_FOCUS = "#prompt"

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
        _key("ctrl+l", "clear", "clear", "Clear the transcript"),
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
        self.loaded: ChatModel | None = None
        self._process: GeneratorProcess | None = None  # the child the model is loaded in, once started
        self._closed = False  # unmounted: a child started after this is closed at once
        self.turns: list[Turn] = []
        self.active: Turn | None = None  # the turn being generated
        self.saved_path: Path | None = None
        self._injected = loaded
        self._dirty = False  # transcript changed since the last save
        self._finished_at = 0.0  # time.monotonic() when the last reply ended (finished, stopped or failed)
        self._frame = 0
        self._flush_timer: Timer | None = None

    # ---- layout and start-up ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusLine(id="status")
        yield Transcript(id="transcript")
        yield Input(placeholder="Loading the model…", id="prompt", disabled=True)
        yield Footer(compact=True)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def prompt_input(self) -> Input:
        return self.query_one("#prompt", Input)

    def on_mount(self) -> None:
        self.title = "gpt2tui"
        self.sub_title = f"chat with {self.model_ref}"
        self.status.model_name = self.model_ref
        self.transcript.border_title = SCROLL_LEGEND
        self.transcript.border_subtitle = KEY_LEGEND
        self._show_settings()
        self._flush_timer = self.set_interval(FLUSH_SECONDS, self._flush, name="chat-flush", pause=True)
        if self._injected is not None:
            self._model_ready(self._injected)
        else:
            self.status.state = "loading…"
            self.transcript.loading = True
            log_file = getattr(self.app, "log_file", None)
            start_daemon(self._load_model, log_file, name="gpt2tui-chat-load")

    def on_unmount(self) -> None:
        self._closed = True
        if self.active is not None:
            self.active.stop.set()
        if self._process is not None:
            self._process.close()

    def _load_model(self, log_file: Path | None) -> None:
        """In a daemon thread: load the model in a child process (or here, when asked to)."""
        from gpt2tui.core import generation
        from gpt2tui.ui.libraries import ensure_libraries

        loaded: ChatModel
        try:
            if in_process_requested():
                ensure_libraries()  # never import transformers concurrently with the app's warm-up
                loaded = generation.load(self.model_ref)
            else:
                self._process = GeneratorProcess(self.model_ref, log_file)
                if self._closed:  # left while the process was starting
                    self._process.close()
                    return
                loaded = self._process.wait_loaded()
        except UserError as err:
            self.post_message(ModelLoadFailed(str(err)))
        except BaseException as err:  # a broken folder, out of memory...: a message, never a crash
            error = f"Could not load '{self.model_ref}': {type(err).__name__}: {err}"
            self.post_message(ModelLoadFailed(error))
        else:
            self.post_message(ModelLoaded(loaded))

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self._model_ready(message.loaded)

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.transcript.loading = False
        self.status.state = "not loaded"
        prefix = Text("Cannot chat: ", style=ERROR_STYLE)
        self.transcript.write(message.error, style=ERROR_STYLE, prefix=prefix)
        self.transcript.write("Press Escape to go back.", style=NOTE_STYLE)
        self.notify(message.error, title="Model not loaded", severity="error", timeout=8)

    def _model_ready(self, loaded: ChatModel) -> None:
        self.loaded = loaded
        self.transcript.loading = False
        self.status.model_name = loaded.name
        self.status.state = ""
        self.sub_title = f"chat with {loaded.name}"
        if self.settings.max_new_tokens > loaded.context_length:
            self.settings = self.settings.replace(max_new_tokens=loaded.context_length)
            self._show_settings()
        prompt = self.prompt_input
        prompt.disabled = False
        self._show_mode()
        prompt.focus()

    # ---- sending and generating ------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        message = event.value.strip()
        if not message:
            return
        if self.loaded is None:
            self.notify("The model is not loaded yet.", severity="warning")
            return
        if self.active is not None:
            self.notify(BUSY, severity="warning")
            return
        self.prompt_input.value = ""
        transcript = self.transcript
        if transcript.entry_count:
            transcript.write("")
        turn = Turn(prompt=message, mode=self.mode, prompt_entry=self._write_prompt(message, self.mode))
        self.turns.append(turn)
        self._start_reply(turn)

    def _write_prompt(self, message: str, mode: Mode) -> int:
        """The prompt's transcript entry, labelled with the mode it is sent in."""
        label = "you ▸ " if mode == "chat" else "raw ▸ "
        return self.transcript.write(message, prefix=Text(label, style=PROMPT_STYLE + " cyan"))

    def _start_reply(self, turn: Turn) -> None:
        """Open the reply entry with a 'thinking…' indicator; generate with the current settings."""
        assert self.loaded is not None
        turn.settings = self.settings
        prefix = Text(f"{self.loaded.name} ▸ ", style=REPLY_PREFIX_STYLE)
        turn.reply_entry = self.transcript.open(prefix, THINKING_STYLE)
        self._show_thinking(turn)
        self.active = turn
        self._dirty = True
        self.status.state = "generating…"
        if self._flush_timer is not None:
            self._flush_timer.reset()  # runs from now; paused again when the reply ends
        earlier = self.turns[: self.turns.index(turn)]
        history = [(t.prompt, t.text) for t in earlier if t.mode == "chat" and t.reply is not None]
        start_daemon(self._generate, turn, history, self.loaded, name="gpt2tui-chat-reply")

    def _generate(self, turn: Turn, history: list[tuple[str, str]], loaded: ChatModel) -> None:
        """Stream the turn's reply (its prompt built for its mode) into ``turn.chunks``."""
        try:
            stream = loaded.reply(
                turn.mode, turn.prompt, history, turn.settings, turn.stop, batch_seconds=READ_SECONDS
            )
            started = False
            for chunk in stream:
                turn.chunks.append(chunk)
                if not started:
                    started = True
                    self.post_message(ReplyStarted(turn))
        except UserError as err:
            self.post_message(ReplyFailed(turn, str(err)))
        except BaseException as err:  # out of memory, a broken model...: a message, never a crash
            self.post_message(ReplyFailed(turn, f"{type(err).__name__}: {err}"))
        else:
            self.post_message(ReplyFinished(turn, stream.reply))

    def _flush(self) -> None:
        """Move the chunks streamed since the last tick into the transcript (one append per tick)."""
        turn = self.active
        if turn is None:
            return
        if not turn.chunks:
            if turn.waiting:
                self._show_thinking(turn)
            return
        pieces: list[str] = []
        while turn.chunks:
            pieces.append(turn.chunks.popleft())
        text = "".join(pieces)
        turn.text += text
        if turn.waiting:
            text = text.lstrip()  # the prefix already ends with a space
            if not text:
                return
            turn.waiting = False
            self.transcript.reset_open(style="")
        self.transcript.append(text)

    def _pause_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.pause()

    def on_reply_started(self, message: ReplyStarted) -> None:
        if message.turn is self.active:
            self._flush()

    def _show_thinking(self, turn: Turn) -> None:
        """The pending reply's indicator; beam search says why nothing streams."""
        self._frame = (self._frame + 1) % len(SPINNER)
        seconds = time.monotonic() - turn.started
        beam = turn.settings.strategy == "beam"
        why = " (beam search shows the whole reply when it is done)" if beam else ""
        self.transcript.reset_open()
        self.transcript.append(f"{SPINNER[self._frame]} thinking… {seconds:.1f}s{why}")

    def on_reply_finished(self, message: ReplyFinished) -> None:
        turn, reply = message.turn, message.reply
        if turn is not self.active:
            return  # cleared or replaced meanwhile
        self._flush()
        if turn.waiting:  # beam search, or nothing generated
            turn.waiting = False
            self.transcript.reset_open(style="")
            if not (turn.text or reply.text).strip():
                self.transcript.append("(no text)", style=META_STYLE)
        turn.reply = reply
        turn.text = reply.text or turn.text
        if reply.stopped:
            self.transcript.append(" [stopped]", style=STOPPED_STYLE)
        self.transcript.close()
        self.transcript.write(self._reply_details(turn), style=META_STYLE, prefix="  ")
        self._reply_ended()
        self.status.tokens_per_second = reply.tokens_per_second
        self.status.state = "stopped" if reply.stopped else ""

    def on_reply_failed(self, message: ReplyFailed) -> None:
        turn = message.turn
        if turn is not self.active:
            return
        self._flush()
        if turn.waiting:
            turn.waiting = False
            self.transcript.reset_open(style="")
        turn.error = message.error
        self.transcript.append(" [failed]", style=ERROR_STYLE)
        self.transcript.close()
        prefix = Text("  Generation failed: ", style=ERROR_STYLE)
        self.transcript.write(message.error, style=ERROR_STYLE, prefix=prefix)
        self._reply_ended()
        self.status.state = "failed"
        self.notify(message.error, title="Generation failed", severity="error", timeout=8)

    def _reply_ended(self) -> None:
        """The transcript has the whole reply now: unsaved again, even if ctrl+s saved it while streaming."""
        self.active = None
        self._pause_flush()
        self._dirty = True
        self._finished_at = time.monotonic()

    @staticmethod
    def _reply_details(turn: Turn) -> str:
        reply = turn.reply
        assert reply is not None
        return (
            f"{turn.settings.describe()} · seed {reply.seed} · {reply.new_tokens} tokens · "
            f"{reply.tokens_per_second:.1f} tok/s"
        )

    # ---- actions ---------------------------------------------------------------------------------

    def _change_settings(self, **changes: object) -> None:
        self.settings = self.settings.replace(**changes).validate()
        self._show_settings()

    def _show_settings(self) -> None:
        self.status.settings = self.settings

    def _show_mode(self) -> None:
        self.status.mode = self.mode
        if self.loaded is not None:
            name = self.loaded.name
            self.prompt_input.placeholder = (
                f"Ask {name} (Enter sends; ctrl+t: raw completion)"
                if self.mode == "chat"
                else f"Text for {name} to continue (Enter sends; ctrl+t: chat)"
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
        """
        if self.active is not None:
            self.active.stop.set()
            self.status.state = "stopping…"
            return
        if time.monotonic() - self._finished_at < STOP_GRACE_SECONDS:
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
        """Page up / page down / start / end of the transcript, whatever has focus."""
        transcript = self.transcript
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
        turn = self.turns[-1]
        self.transcript.truncate(turn.prompt_entry)  # the prompt too: its label says the mode
        fresh = Turn(
            prompt=turn.prompt, mode=self.mode, prompt_entry=self._write_prompt(turn.prompt, self.mode)
        )
        self.turns[-1] = fresh
        self._start_reply(fresh)

    def action_clear(self) -> None:
        if self.active is not None:
            self.active.stop.set()
            self.active = None
            self._pause_flush()
        self.turns.clear()
        self.transcript.clear()
        self.status.state = ""
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
