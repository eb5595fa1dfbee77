"""Replies generated in a child process: the model lives there, and only their text (with its tokens) comes
back.

In the TUI, ``generate`` would share one interpreter with the UI thread. Its per-token work is mostly Python,
so every millisecond the UI holds the GIL (drawing a frame; worse, drawing while the OS has paused it on a
busy machine) is a millisecond a token waits: through the chat screen, replies streamed at 0.7-0.9x the
tokens/s of raw ``generate`` (``bench/stream_chat.py``). A :class:`GeneratorProcess` loads the model in
``python -m gpt2tui.core.generator REF`` and streams each reply back as JSON lines, so the two interpreters
share nothing but a pipe. In the child a reply is the same :func:`~gpt2tui.core.generation.turn_stream`
(``model.generate`` feeding a ``TextIteratorStreamer``) that runs in-process for the CLI.

The child's lifetime is its stdin: when the parent closes it, or exits, or is killed, the child ends at once
(even mid-import or mid-reply). It starts in its own session, so keys sent to the terminal never reach it, and
its stdout and stderr go to the log file (a library's print cannot corrupt the stream, which uses a copy of
the original stdout).

Protocol, one JSON object per line. To the child: ``{"op": "reply", "id", "mode", "message", "history",
"settings"}``, ``{"op": "cell", "id", "label", "message", "settings"}`` (one cell of the decoding grid:
``core.compare.reply_cell``, as ``gpt2tui compare-decoding`` runs it), ``{"op": "stop", "id"}`` and
``{"op": "share", "ways"}`` (``ways`` replies are generated at once: compute with a share of the cores, answered
by ``{"event": "threads", "threads"}``). From the child: ``{"event": "loaded", "name", "context_length",
"threads"}`` or ``{"event": "load_failed", "error"}``; then for each reply, ``{"id", "event": "chunk", "text",
"tokens"}`` lines (``tokens``: the chunk's :class:`~gpt2tui.core.generation.Token` s as ``[id, text, logprob,
model_logprob]``, a batched chunk's being its parts' in order) and one ``{"id", "event": "finished", "reply"}`` (for a cell: ``"cell"``, the cell's figures) or ``{"id",
"event": "failed", "error"}``; ``reply`` is the
:class:`~gpt2tui.core.generation.Reply` as a dict (its seed, token counts, and how many prompt tokens were cut
to fit the context), so a field added there crosses the pipe with no change here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gpt2tui.core.compare import Cell
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import Chunk, GenerationSettings, Mode, Reply, Token

if TYPE_CHECKING:
    from gpt2tui.core.device import ThreadPlan
    from gpt2tui.core.generation import LoadedModel

IN_PROCESS_ENV = "GPT2TUI_CHAT_IN_PROCESS"
"""Set to 1: the TUI's chat generates in its own process, as before (the off switch for this module)."""
BATCH_SECONDS = 1 / 25
"""The child sends at most this many chunk lines a second (tokens arriving meanwhile are joined)."""
POLL_SECONDS = 0.05
WARM_UP_PROMPT = "Question: What is the largest planet of the solar system, and how far is it from the Sun?"
WARM_UP_SETTINGS = GenerationSettings(strategy="greedy", max_new_tokens=3, seed=0)
"""How often a waiting reader looks at its stop event (Escape reaches the child within this)."""


def in_process_requested() -> bool:
    return os.environ.get(IN_PROCESS_ENV, "").strip().lower() in ("1", "true", "yes")


class GeneratorProcess:
    """A model loaded in a child process; :meth:`reply` streams a chat turn's text from it.

    Starting returns at once (the child imports torch and loads the model meanwhile); :meth:`wait_loaded`
    blocks until it is ready and raises :class:`UserError` with the child's sentence when it is not.
    """

    def __init__(self, ref: str, log_file: Path | None = None) -> None:
        self.ref = ref
        self.name = ref
        self.context_length = 0
        self.log_file = log_file
        log: IO[bytes] | int = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gpt2tui.core.generator", ref],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            if not isinstance(log, int):
                log.close()  # the child has its own copy
        self._send_lock = threading.Lock()
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._sinks: dict[int, Callable[[Chunk], None]] = {}  # replies whose chunks the reader hands over
        self._ids = itertools.count(1)
        self._loaded = threading.Event()
        self.planned = 0  # the torch threads the child planned alone (known once loaded)
        self.threads = 0  # those it computes with now (its share of them, side by side)
        self._load_error: str | None = None
        self._ended = False
        threading.Thread(target=self._read, name="gpt2tui-generator-read", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_loaded(self) -> GeneratorProcess:
        self._loaded.wait()
        if self._load_error is not None:
            raise UserError(self._load_error)
        return self

    def reply(
        self,
        mode: Mode,
        message: str,
        history: list[tuple[str, str]],
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        batch_seconds: float = 0.0,
    ) -> RemoteReplyStream:
        """Iterate for the reply's text; ``stop`` ends it at the child's next token (the text so far is kept).

        ``batch_seconds`` is accepted for the in-process signature's sake: the child always batches.
        """
        settings.validate()  # refused here, in the caller's words, as in-process
        request = {
            "op": "reply",
            "id": next(self._ids),
            "mode": mode,
            "message": message,
            "history": [list(turn) for turn in history],
            "settings": dataclasses.asdict(settings),
        }
        return RemoteReplyStream(self, request, stop or threading.Event())

    def cell(
        self, label: str, prompt: str, settings: GenerationSettings, stop: threading.Event | None = None
    ) -> RemoteReplyStream:
        """One cell of the decoding grid, generated by the child: iterate for its text; its figures are in the
        stream's ``cell`` once iteration ends."""
        settings.validate()
        request = {
            "op": "cell",
            "id": next(self._ids),
            "label": label,
            "message": prompt,
            "settings": dataclasses.asdict(settings),
        }
        return RemoteReplyStream(self, request, stop or threading.Event())

    def share(self, ways: int) -> None:
        """Say that ``ways`` replies are generated at once on this machine (chat panes side by side): the child
        computes its next replies with its share of the cores it planned alone, and ``threads`` follows."""
        self._send({"op": "share", "ways": ways})

    def close(self) -> None:
        """End the child now (it also ends by itself when this process exits)."""
        self._ended = True
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        if self._process.poll() is None:
            self._process.terminate()

    # ---- plumbing -------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        line = (json.dumps(message) + "\n").encode("utf-8")
        with self._send_lock:
            stdin = self._process.stdin
            if stdin is None or self._ended:
                raise UserError(self._ended_sentence())
            try:
                stdin.write(line)
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise UserError(self._ended_sentence()) from None

    def _open(self, reply_id: int, sink: Callable[[Chunk], None] | None) -> queue.Queue[dict[str, Any]]:
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies[reply_id] = answers
        if sink is not None:
            self._sinks[reply_id] = sink
        if self._ended:
            answers.put({"event": "ended"})
        return answers

    def _close(self, reply_id: int) -> None:
        self._replies.pop(reply_id, None)
        self._sinks.pop(reply_id, None)

    def _read(self) -> None:
        """One thread reads everything the child writes and hands each line to whoever waits for it."""
        stdout = self._process.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            event = message.get("event")
            if event == "loaded":
                self.name = str(message.get("name") or self.ref)
                self.context_length = int(message.get("context_length") or 0)
                self.planned = self.threads = int(message.get("threads") or 0)
                self._loaded.set()
            elif event == "threads":
                self.threads = int(message.get("threads") or 0)
            elif event == "load_failed":
                self._load_error = str(message.get("error"))
                self._loaded.set()
            else:
                reply_id = int(message.get("id", 0))
                sink = self._sinks.get(reply_id)
                if sink is not None and event == "chunk":
                    sink(chunk_from(message))
                    continue
                answers = self._replies.get(reply_id)
                if answers is not None:
                    answers.put(message)
        self._process.wait()
        self._ended = True
        if not self._loaded.is_set():
            self._load_error = self._ended_sentence(before_loading=True)
            self._loaded.set()
        for answers in list(self._replies.values()):
            answers.put({"event": "ended"})

    def _ended_sentence(self, before_loading: bool = False) -> str:
        code = self._process.poll()
        how = f"exit code {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
        where = f"; see {self.log_file}" if self.log_file else ""
        what = f"before loading '{self.ref}'" if before_loading else "during the reply"
        return f"The model process ended {what} ({how}){where}."


def chunk_line(reply_id: int, chunk: str) -> dict[str, Any]:
    """A chunk as the child sends it (a plain ``str`` goes with no tokens)."""
    tokens = [[t.id, t.text, t.logprob, t.model_logprob] for t in getattr(chunk, "tokens", ())]
    return {"id": reply_id, "event": "chunk", "text": str(chunk), "tokens": tokens}


def chunk_from(message: dict[str, Any]) -> Chunk:
    """The :class:`Chunk` a chunk line carries."""

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    tokens = (
        Token(int(token), str(text), number(logprob), number(model))
        for token, text, logprob, model in message.get("tokens") or ()
    )
    return Chunk(str(message.get("text", "")), tokens)


class RemoteReplyStream:
    """The child's reply as an iterable of :class:`~gpt2tui.core.generation.Chunk` s, as in-process (text
    with its tokens); ``reply`` holds the totals once iteration ends."""

    def __init__(self, owner: GeneratorProcess, request: dict[str, Any], stop: threading.Event) -> None:
        self.owner = owner
        self.request = request
        self.stop = stop
        self.reply = Reply()
        self.cell: Cell | None = None  # a grid cell's figures, once its stream ends
        self._answers: queue.Queue[dict[str, Any]] | None = None

    def start(self, sink: Callable[[Chunk], None] | None = None) -> RemoteReplyStream:
        """Send the request now, so the child starts while this thread goes on (the chat's UI thread: a pipe
        write, microseconds); iterating or :meth:`deliver` then follows it. ``sink``: as for :meth:`deliver`,
        which then uses this one. Iterating or delivering sends the request itself when not started."""
        if self._answers is None:
            reply_id = int(self.request["id"])
            answers = self.owner._open(reply_id, sink)
            try:
                self.owner._send(self.request)
            except UserError:
                self.owner._close(reply_id)
                raise
            self._answers = answers
        return self

    def __iter__(self) -> Iterator[Chunk]:
        return self._follow(None)

    def deliver(self, sink: Callable[[Chunk], None]) -> None:
        """Run the reply, handing each chunk to ``sink`` from the thread that reads the child's pipe.

        Iterating hands a chunk from that thread to the iterating one first: one more thread to wake, which on
        two cores busy with the child's torch threads costs up to a scheduler slice (0.3-8 ms measured for the
        first chunk). ``sink`` must be quick and never raise (it runs in the reader); returns at the reply's
        end, with ``reply`` set, or raises as iterating does.
        """
        for _ in self._follow(sink):
            pass

    def _follow(self, sink: Callable[[Chunk], None] | None) -> Iterator[Chunk]:
        owner, reply_id = self.owner, int(self.request["id"])
        answers = self.start(sink)._answers
        assert answers is not None
        stop_sent = False
        try:
            while True:
                if self.stop.is_set() and not stop_sent:
                    stop_sent = True
                    owner._send({"op": "stop", "id": reply_id})
                try:
                    message = answers.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                event = message.get("event")
                if event == "chunk":
                    yield chunk_from(message)
                elif event == "finished":
                    self.reply = Reply(**message.get("reply", {}))
                    if "cell" in message:
                        self.cell = Cell(**message["cell"])
                    return
                elif event == "failed":
                    raise UserError(str(message.get("error")))
                else:
                    raise UserError(owner._ended_sentence())
        finally:
            owner._close(reply_id)


# ------------------------------------------------------------------------------------------ the child


def serve(argv: list[str] | None = None) -> int:
    """``python -m gpt2tui.core.generator REF``: load REF, then answer reply requests until stdin ends."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m gpt2tui.core.generator MODEL\n")
        return 2
    ref = args[0]
    # The stream gets a private copy of stdout; fd 1 joins stderr (the log), so prints land there.
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    requests: queue.Queue[dict[str, Any]] = queue.Queue()
    stops: dict[int, threading.Event] = {}
    lock = threading.Lock()

    def stop_event(reply_id: int) -> threading.Event:
        with lock:
            return stops.setdefault(reply_id, threading.Event())

    def read_requests() -> None:
        for raw in sys.stdin:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if message.get("op") == "stop":
                stop_event(int(message.get("id", 0))).set()
            elif message.get("op") in ("reply", "cell", "share"):
                requests.put(message)
        os._exit(0)  # the parent is gone or done with us: stop at once, whatever is running

    # Before anything slow, so that a parent that quits during the import ends this process too.
    threading.Thread(target=read_requests, name="gpt2tui-generator-requests", daemon=True).start()

    def send(message: dict[str, Any]) -> None:
        stream.write(json.dumps(message) + "\n")

    from gpt2tui.core.device import configure_threads, freeze_heap
    from gpt2tui.core.quiet import quiet_environment, route_library_logs

    quiet_environment()
    route_library_logs(None)
    plan = configure_threads()  # before torch loads: the cores no other process keeps busy, as `generate`
    sys.stderr.write(f"gpt2tui generator: threads {plan.describe()}\n")
    from gpt2tui.core import generation

    try:
        loaded = generation.load(ref)
    except UserError as err:
        send({"event": "load_failed", "error": str(err)})
        return 2
    except BaseException as err:  # a broken folder, out of memory...: a sentence for the chat
        send({"event": "load_failed", "error": f"Could not load '{ref}': {type(err).__name__}: {err}"})
        return 2
    # A short reply first: the first ``generate`` calls of a process pay for lazy imports and first
    # allocations (a prompt of several tokens, then single tokens with a cache), which would otherwise delay
    # the first reply's first character by about a prefill's time again.
    generation.complete(loaded.model, loaded.tokenizer, WARM_UP_PROMPT, WARM_UP_SETTINGS)
    freeze_heap()  # and what the first ``generate`` imported (core.device)
    send(
        {
            "event": "loaded",
            "name": loaded.name,
            "context_length": loaded.context_length,
            "threads": plan.threads,
        }
    )
    while True:
        request = requests.get()
        if request.get("op") == "share":  # between replies: the next reply's generating thread takes it
            send({"event": "threads", "threads": share(plan, int(request.get("ways") or 1))})
            continue
        reply_id = int(request.get("id", 0))
        try:
            send({"id": reply_id, "event": "finished", **answer(loaded, request, stop_event(reply_id), send)})
        except UserError as err:
            send({"id": reply_id, "event": "failed", "error": str(err)})
        except BaseException as err:  # out of memory, a broken model...: a sentence, never a dead child
            send({"id": reply_id, "event": "failed", "error": f"{type(err).__name__}: {err}"})
        finally:
            with lock:
                stops.pop(reply_id, None)


def share(plan: ThreadPlan, ways: int) -> int:
    """Compute the next replies with this child's share of its cores, ``ways`` replies being generated at once
    (:func:`~gpt2tui.core.device.shared_threads`); returns the thread count."""
    import torch

    from gpt2tui.core.device import shared_threads

    threads = shared_threads(plan, ways)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)  # new threads (each reply's own) start with this count
        sys.stderr.write(f"gpt2tui generator: threads {threads} of {plan.threads} ({ways} side by side)\n")
    return threads


def answer(
    loaded: LoadedModel,
    request: dict[str, Any],
    stop: threading.Event,
    send: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Stream one request's chunks with ``send``; returns what its ``finished`` line carries."""
    from gpt2tui.core import generation
    from gpt2tui.core.compare import reply_cell

    reply_id = int(request.get("id", 0))
    settings = GenerationSettings(**request.get("settings", {}))
    message = str(request.get("message", ""))

    def chunk(text: str) -> None:
        send(chunk_line(reply_id, text))

    if request.get("op") == "cell":
        cell = reply_cell(
            str(request.get("label", "")), loaded, message, settings, stop, chunk, BATCH_SECONDS
        )
        return {"reply": {}, "cell": cell.to_dict()}
    history = [(str(q), str(a)) for q, a in request.get("history", [])]
    mode = request.get("mode", "chat")
    reply = generation.turn_stream(
        loaded, mode, message, history, settings, stop, batch_seconds=BATCH_SECONDS
    )
    for text in reply:
        chunk(text)
    return {"reply": dataclasses.asdict(reply.reply)}


if __name__ == "__main__":
    raise SystemExit(serve())
