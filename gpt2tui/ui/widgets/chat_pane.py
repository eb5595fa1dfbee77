"""One side of a chat: a model, its status line, its transcript and its turns, streaming on its own.

The chat screen holds one pane, or two side by side (two models answering the same prompt); the prompt, the
decoding settings and the keys belong to the screen, everything about one model's conversation to its pane.

The model is loaded and generates in a child process (``core.generator``): ``generate``'s per-token work is
mostly Python, and in this process it would wait for the GIL whenever the UI thread draws (through the chat
screen, replies streamed at 0.7-0.9x raw ``generate``; on a busy machine, worse). Only text crosses the pipe.
A model injected by a test or a bench, or ``GPT2TUI_CHAT_IN_PROCESS=1``, generates in this process instead.

A daemon thread waits for the load; each reply is read by another that iterates the model's ``reply`` stream
and drops chunks into the turn's queue. Daemon threads rather than Textual thread workers, because
``asyncio.run`` joins the workers' executor on exit: Ctrl+Q would wait for a model to load (or for the
background import it waits on). The pane learns the outcome from its own messages (``ModelLoaded``,
``ReplyFinished``, ...), never from a worker's state, and tells the screen with its public ones
(:class:`ChatPane.Ready`, :class:`ChatPane.ReplyEnded`, ...).

The reply's first text is drawn the moment it arrives (``ReplyStarted``); after that a 12 Hz timer drains the
queue into the transcript: one small append per tick whatever the token rate, never more than the current
line re-wrapped (see ``widgets/transcript.py``), and no layout of the screen. The generator hands text over 25
times a second at most (``batch_seconds``), so the reading threads do not wake for every token. The timer
runs only while a reply does. :meth:`ChatPane.stop` sets the reply's stop event; generation ends at the next
token and keeps the partial text.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer

from gpt2tui.core.card import ModelMetadata, stopped_note
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings, LoadedModel, Mode, Reply, ReplyStream
from gpt2tui.core.generator import GeneratorProcess, RemoteReplyStream, in_process_requested
from gpt2tui.core.transcripts import SAMPLING, SavedReply, SavedTurn
from gpt2tui.ui.expectations import expectations
from gpt2tui.ui.widgets.status_line import StatusLine
from gpt2tui.ui.widgets.transcript import Transcript

ChatModel = LoadedModel | GeneratorProcess
"""What a pane talks to: a model in a child process (the default), or one in this process (injected by
tests and benches, or with GPT2TUI_CHAT_IN_PROCESS=1)."""

FLUSH_SECONDS = 1 / 12  # how often streamed text reaches the transcript (the first text: at once)
READ_SECONDS = 1 / 25  # how often the core hands streamed text over (one chunk per batch of tokens)
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
TRIMMED_NOTE = "The prompt was cut to its last {kept} tokens to fit the model's context of {context}."
FULL_NOTE = (
    "The reply ended at the model's context of {context}: {room} new tokens fit after the {prompt}-token "
    "prompt, not the {asked} asked for."
)

PROMPT_STYLE = "bold"
REPLY_PREFIX_STYLE = "bold green"
THINKING_STYLE = "italic dim"
META_STYLE = "dim"
STOPPED_STYLE = "bold yellow"
ERROR_STYLE = "bold red"
NOTE_STYLE = "italic"
PROBABILITY_STYLES = ((0.7, "green"), (0.4, "yellow"), (0.15, "dark_orange"), (0.0, "bold red"))
"""A token's colour by its probability as drawn: the first bucket whose floor it reaches."""
PROBABILITY_LEGEND = "p [green]■[/]≥.7 [yellow]■[/]≥.4 [dark_orange]■[/]≥.15 [bold red]■[/]<.15"


@dataclass(eq=False)
class Turn:
    """One prompt and its reply, as shown in the transcript and saved as Markdown."""

    prompt: str
    mode: Mode
    prompt_entry: int = -1  # transcript entry of the prompt (written after the request leaves)
    reply_entry: int = -1  # transcript entry of the reply; regenerate truncates from here
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    text: str = ""  # what has been shown so far
    reply: Reply | None = None
    error: str | None = None
    model: str | None = None  # the model that wrote the reply, when not this pane's (a loaded transcript's)
    waiting: bool = True  # no chunk shown yet: the 'thinking…' indicator is up
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    chunks: deque[str] = field(default_factory=deque)  # filled by the worker, drained by the flush timer


class Request(NamedTuple):
    """A reply asked for (:meth:`ChatPane._request`): the conversation before it, the sink of its chunks, and
    the child's stream when the model is in a child process (None: it is generated in a thread here)."""

    history: list[tuple[str, str]]
    take: Callable[[str], None]
    stream: RemoteReplyStream | None


def start_daemon(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    """Run ``target(*args)`` in a daemon thread: the app may exit without waiting for it."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


class ModelLoaded(Message):
    """The load thread finished: the model is ready."""

    def __init__(self, loaded: ChatModel) -> None:
        super().__init__()
        self.loaded = loaded


class ModelLoadFailed(Message):
    """The load thread failed; ``error`` is a sentence for the user."""

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


class ChatPane(Vertical):
    """A status line over a transcript, for one model; :meth:`send` streams a reply into it."""

    DEFAULT_CSS = """
    ChatPane {
        height: 1fr;
        width: 1fr;
    }
    """

    class Ready(Message):
        """The pane's model loaded: it can take prompts."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class LoadFailed(Message):
        """The pane's model could not be loaded (the sentence is already in its transcript)."""

        def __init__(self, pane: ChatPane, error: str) -> None:
            super().__init__()
            self.pane = pane
            self.error = error

    class ReplyEnded(Message):
        """A reply finished, was stopped or failed; ``turn.error`` says which failed."""

        def __init__(self, pane: ChatPane, turn: Turn) -> None:
            super().__init__()
            self.pane = pane
            self.turn = turn

    def __init__(
        self,
        model_ref: str,
        *,
        loaded: LoadedModel | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.model_ref = model_ref
        self.loaded: ChatModel | None = None
        self.process: GeneratorProcess | None = None  # the child the model is loaded in, once started
        self._closed = False  # unmounted: a child started after this is closed at once
        self.turns: list[Turn] = []
        self.active: Turn | None = None  # the turn being generated
        self.finished_at = 0.0  # time.monotonic() when the last reply ended (finished, stopped or failed)
        self._injected = loaded
        self.probabilities = False  # finished replies coloured by each token's probability
        self._frame = 0
        self._flush_timer: Timer | None = None
        self.sharing = 1  # how many panes reply at once (their children share the cores)
        self.opening_note: str | None = None  # written first in the transcript (set before mounting)

    def compose(self) -> ComposeResult:
        yield StatusLine()
        yield Transcript()

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def model_label(self) -> str:
        return self.loaded.name if self.loaded is not None else self.model_ref

    # ---- loading ---------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.status.model_name = self.model_ref
        self._flush_timer = self.set_interval(FLUSH_SECONDS, self._flush, name="chat-flush", pause=True)
        if self.opening_note:
            self.transcript.write(self.opening_note, style=NOTE_STYLE)
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
        if self.process is not None:
            self.process.close()

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
                self.process = GeneratorProcess(self.model_ref, log_file)
                if self._closed:  # left while the process was starting
                    self.process.close()
                    return
                loaded = self.process.wait_loaded()
        except UserError as err:
            self.post_message(ModelLoadFailed(str(err)))
        except BaseException as err:  # a broken folder, out of memory...: a message, never a crash
            error = f"Could not load '{self.model_ref}': {type(err).__name__}: {err}"
            self.post_message(ModelLoadFailed(error))
        else:
            self.post_message(ModelLoaded(loaded))

    def on_model_loaded(self, message: ModelLoaded) -> None:
        message.stop()
        self._model_ready(message.loaded)

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        message.stop()
        self.transcript.loading = False
        self.status.state = "not loaded"
        prefix = Text("Cannot chat: ", style=ERROR_STYLE)
        self.transcript.write(message.error, style=ERROR_STYLE, prefix=prefix)
        self.transcript.write("Press Escape to go back.", style=NOTE_STYLE)
        self.post_message(self.LoadFailed(self, message.error))

    def _model_ready(self, loaded: ChatModel) -> None:
        self.loaded = loaded
        self.transcript.loading = False
        meta = model_metadata(loaded)
        stopped = meta is not None and stopped_note(meta) is not None
        self.status.model_name = f"{loaded.name} (stopped)" if stopped else loaded.name
        self.status.state = ""
        notes = expectations(meta) if meta is not None else []
        if notes and not self.transcript.entry_count:  # said once, before the first prompt
            self.transcript.write(f"{loaded.name}: {'; '.join(notes)}.", style=NOTE_STYLE)
        if self.sharing > 1:
            self.share_cores(self.sharing)
        self.post_message(self.Ready(self))

    def share_cores(self, ways: int) -> None:
        """``ways`` panes reply at once: this pane's child computes with its share of the cores (the message is
        a pipe write; a child that has ended says so at the next reply)."""
        self.sharing = ways
        if isinstance(self.loaded, GeneratorProcess):
            with contextlib.suppress(UserError):
                self.loaded.share(ways)

    # ---- sending and generating ------------------------------------------------------------------

    def send(self, prompt: str, mode: Mode, settings: GenerationSettings) -> Turn:
        """Write the prompt and stream a reply to it (the model must be loaded and idle)."""
        turn = Turn(prompt=prompt, mode=mode)
        self.turns.append(turn)

        def separate() -> None:
            if self.transcript.entry_count:
                self.transcript.write("")  # a blank line after the turn before

        return self._reply_to(turn, settings, separate)

    def regenerate(self, mode: Mode, settings: GenerationSettings) -> Turn:
        """Replace the last turn's reply (its prompt is written again: its label says the mode)."""
        turn = self.turns[-1]
        fresh = Turn(prompt=turn.prompt, mode=mode)
        self.turns[-1] = fresh
        return self._reply_to(fresh, settings, lambda: self.transcript.truncate(turn.prompt_entry))

    def _reply_to(self, turn: Turn, settings: GenerationSettings, make_room: Callable[[], object]) -> Turn:
        """Ask for ``turn``'s reply, then draw: ``make_room`` readies the transcript, the prompt is written and
        the reply's entry opened. The request leaves first, so the model starts before any drawing."""
        request = self._request(turn, settings)
        make_room()
        turn.prompt_entry = self._write_prompt(turn.prompt, turn.mode)
        self._show_reply(turn, request)
        return turn

    def stop(self) -> bool:
        """Stop the reply being generated; False when none is."""
        if self.active is None:
            return False
        self.active.stop.set()
        self.status.state = "stopping…"
        return True

    def clear(self) -> None:
        """Forget the conversation (a reply being generated is stopped and dropped)."""
        if self.active is not None:
            self.active.stop.set()
            self.active = None
            self._pause_flush()
        self.turns.clear()
        self.transcript.clear()
        self._show_last_speed()

    def show_probabilities(self, on: bool) -> None:
        """Colour every finished reply by its tokens' probabilities, or show them plain again (beam search
        replies stay plain: they keep no single draw)."""
        self.probabilities = on
        for turn in self.turns:
            if turn.reply is not None and turn.reply.tokens and turn is not self.active:
                self.transcript.replace_entry(turn.reply_entry, reply_body(turn, coloured=on))

    def undo(self) -> Turn | None:
        """Forget the last turn, its prompt and reply gone from the transcript; None when there is none."""
        if not self.turns or self.active is not None:
            return None
        turn = self.turns.pop()
        start = turn.prompt_entry
        if start > 0 and not self.transcript.entry_text(start - 1):
            start -= 1  # the blank line that separated it from the turn before
        self.transcript.truncate(start)
        self._show_last_speed()
        return turn

    def _show_last_speed(self) -> None:
        """The status line's speed is the last reply's still in the transcript (none: no speed, no state)."""
        last = self.turns[-1].reply if self.turns else None
        self.status.tokens_per_second = last.tokens_per_second if last is not None else None
        self.status.state = ""

    def load_turns(self, turns: list[SavedTurn], index: int) -> int:
        """Show a saved conversation (each turn's reply number ``index``) and continue from it; returns how
        many turns this pane took."""
        self.clear()
        taken = 0
        for saved in turns:
            if index >= len(saved.replies):
                continue
            answer = saved.replies[index]
            if self.transcript.entry_count:
                self.transcript.write("")
            mode: Mode = "raw" if saved.mode == "raw" else "chat"
            turn = Turn(prompt=saved.prompt, mode=mode, prompt_entry=self._write_prompt(saved.prompt, mode))
            turn.settings = settings_from_record(answer.settings)
            turn.model = answer.model
            turn.text = answer.text
            turn.waiting = False
            if answer.error:
                turn.error = answer.error
            else:
                turn.reply = Reply(
                    text=answer.text,
                    new_tokens=answer.new_tokens,
                    stopped=answer.stopped,
                    seed=answer.seed or 0,
                    seconds=answer.new_tokens / answer.tokens_per_second if answer.tokens_per_second else 0.0,
                )
            prefix = Text(f"{answer.model} ▸ ", style=REPLY_PREFIX_STYLE)
            turn.reply_entry = self.transcript.write(answer.text.strip() or "(no text)", prefix=prefix)
            details = " · ".join(answer.details())
            self.transcript.write(details, style=META_STYLE, prefix="  ")
            self.turns.append(turn)
            taken += 1
        return taken

    def saved_replies(self) -> list[SavedReply]:
        """Each turn's reply as saved in a transcript (with token probabilities when they are shown)."""
        return [saved_reply(self.model_label, turn, self.probabilities) for turn in self.turns]

    def _write_prompt(self, message: str, mode: Mode) -> int:
        """The prompt's transcript entry, labelled with the mode it is sent in."""
        label = "you ▸ " if mode == "chat" else "raw ▸ "
        return self.transcript.write(message, prefix=Text(label, style=PROMPT_STYLE + " cyan"))

    def _request(self, turn: Turn, settings: GenerationSettings) -> Request:
        """Ask for the turn's reply with ``settings``: a model in its child process starts on it at once, while
        this thread draws the prompt and the reply's entry (:meth:`_show_reply`)."""
        assert self.loaded is not None
        turn.settings = settings
        turn.model = None  # this pane's model writes the reply (again, when a loaded turn is regenerated)
        earlier = self.turns[: self.turns.index(turn)]
        history = [(t.prompt, t.text) for t in earlier if t.mode == "chat" and t.reply is not None]
        take = self._taker(turn)  # its chunks reach the transcript through this thread, after this method
        stream = None
        if isinstance(self.loaded, GeneratorProcess):
            with contextlib.suppress(UserError):  # refused again, and reported, by the reading thread
                stream = self._open_reply(self.loaded, turn, history).start(take)
        return Request(history, take, stream)

    def _show_reply(self, turn: Turn, request: Request) -> None:
        """Open the reply entry with a 'thinking…' indicator, and stream the reply into it."""
        assert self.loaded is not None
        history, take, stream = request
        prefix = Text(f"{self.loaded.name} ▸ ", style=REPLY_PREFIX_STYLE)
        turn.reply_entry = self.transcript.open(prefix, THINKING_STYLE)
        self._show_thinking(turn)
        self.active = turn
        self.status.state = "generating…"
        if self._flush_timer is not None:
            self._flush_timer.reset()  # runs from now; paused again when the reply ends
        start_daemon(self._generate, turn, history, self.loaded, take, stream, name="gpt2tui-chat-reply")

    def _taker(self, turn: Turn) -> Callable[[str], None]:
        """What receives the turn's chunks (in a reading thread): queues them for the flush timer."""
        started = threading.Event()

        def take(chunk: str) -> None:
            if not chunk:  # a reply's last chunk may bring only tokens (end-of-text), no text
                return
            turn.chunks.append(chunk)
            if not started.is_set():  # the reply's first text is drawn at once, not at the next tick
                started.set()
                self.post_message(ReplyStarted(turn))

        return take

    @staticmethod
    def _open_reply(
        loaded: ChatModel, turn: Turn, history: list[tuple[str, str]]
    ) -> ReplyStream | RemoteReplyStream:
        return loaded.reply(
            turn.mode, turn.prompt, history, turn.settings, turn.stop, batch_seconds=READ_SECONDS
        )

    def _generate(
        self,
        turn: Turn,
        history: list[tuple[str, str]],
        loaded: ChatModel,
        take: Callable[[str], None],
        stream: ReplyStream | RemoteReplyStream | None,
    ) -> None:
        """Stream the turn's reply (its prompt built for its mode) into ``turn.chunks``."""
        try:
            if stream is None:
                stream = self._open_reply(loaded, turn, history)
            if isinstance(stream, RemoteReplyStream):
                stream.deliver(take)  # chunks straight from the pipe's reader thread
            else:
                for chunk in stream:
                    take(chunk)
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
        message.stop()
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
        message.stop()
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
        if self.probabilities and reply.tokens:
            self.transcript.replace_entry(turn.reply_entry, reply_body(turn, coloured=True))
        self.transcript.write(reply_details(turn), style=META_STYLE, prefix="  ")
        if reply.prompt_trimmed and self.loaded is not None:
            note = TRIMMED_NOTE.format(kept=reply.prompt_tokens, context=self.loaded.context_length)
            self.transcript.write(note, style=META_STYLE, prefix="  ")
        if (
            self.loaded is not None
            and 0 < reply.room <= reply.new_tokens
            and reply.room < turn.settings.max_new_tokens
        ):
            note = FULL_NOTE.format(
                context=self.loaded.context_length,
                room=reply.room,
                prompt=reply.prompt_tokens,
                asked=turn.settings.max_new_tokens,
            )
            self.transcript.write(note, style=META_STYLE, prefix="  ")
        self.status.tokens_per_second = reply.tokens_per_second
        self.status.state = "stopped" if reply.stopped else ""
        self._reply_ended(turn)

    def on_reply_failed(self, message: ReplyFailed) -> None:
        message.stop()
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
        self.status.state = "failed"
        self._reply_ended(turn)

    def _reply_ended(self, turn: Turn) -> None:
        self.active = None
        self._pause_flush()
        self.finished_at = time.monotonic()
        self.post_message(self.ReplyEnded(self, turn))


def model_metadata(loaded: ChatModel) -> ModelMetadata | None:
    """What the store knows of the chat's model (a model in a child process is looked up by its name), or None
    for a model that is not stored (a Hub id, a folder)."""
    meta = getattr(loaded, "metadata", None)
    if isinstance(meta, ModelMetadata):
        return meta
    from gpt2tui.core.store import ModelStore

    try:
        return ModelStore().get(loaded.name).metadata
    except (UserError, OSError, ValueError):
        return None


def reply_details(turn: Turn) -> str:
    """The line under a reply: its settings, its seed when it drew tokens, length and speed."""
    reply = turn.reply
    assert reply is not None
    seed = f" · seed {reply.seed}" if turn.settings.strategy in SAMPLING else ""
    return (
        f"{turn.settings.describe()}{seed} · {reply.new_tokens} tokens · {reply.tokens_per_second:.1f} tok/s"
    )


def probability_style(logprob: float) -> str:
    p = math.exp(logprob)
    return next(style for floor, style in PROBABILITY_STYLES if p >= floor)


def coloured_pieces(reply: Reply, length: int) -> Text:
    """The first ``length`` characters of the reply's text, each token in its probability's colour."""
    text = Text()
    for piece, (_, logprob) in zip(reply.pieces, reply.tokens, strict=False):
        if len(text) >= length:
            break
        text.append(piece[: length - len(text)], style=probability_style(logprob))
    return text


def reply_body(turn: Turn, coloured: bool) -> Text:
    """A finished reply's text as its transcript entry shows it: plain as streamed, or coloured."""
    reply = turn.reply
    assert reply is not None
    full = reply.text or turn.text
    shown = full.lstrip()
    if not shown.strip():
        body = Text("(no text)", style=META_STYLE)
    elif coloured and reply.tokens and reply.pieces:
        body = coloured_pieces(reply, len(full))[len(full) - len(shown) :]
    else:
        body = Text(shown)
    if reply.stopped:
        body.append(" [stopped]", style=STOPPED_STYLE)
    return body


def settings_from_record(record: dict[str, object]) -> GenerationSettings:
    """A saved reply's settings (``to_record``'s keys) as settings; unknown or bad values: the defaults."""
    known = {key: value for key, value in record.items() if key in GenerationSettings.__dataclass_fields__}
    try:
        return GenerationSettings(**known).validate()  # type: ignore[arg-type]
    except (TypeError, UserError):
        return GenerationSettings()


def saved_reply(model: str, turn: Turn, probabilities: bool) -> SavedReply:
    """One turn's reply for a transcript file."""
    reply = turn.reply
    saved = SavedReply(
        model=turn.model or model, text=turn.text, settings=turn.settings.to_record(), error=turn.error
    )
    if reply is not None:
        saved.text = reply.text or turn.text
        saved.seed = reply.seed if turn.settings.strategy in SAMPLING else None
        saved.new_tokens = reply.new_tokens
        saved.tokens_per_second = reply.tokens_per_second
        saved.stopped = reply.stopped
        if probabilities and reply.tokens and reply.pieces:
            saved.probabilities = [
                (piece, math.exp(lp)) for piece, (_, lp) in zip(reply.pieces, reply.tokens, strict=False)
            ]
    return saved
