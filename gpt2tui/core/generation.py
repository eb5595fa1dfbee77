"""Streaming generation: one API that yields text as the model produces it, and stops when asked.

Each chunk of text is a :class:`Chunk` (a ``str``) carrying its :class:`Token` s: their ids, texts and
log-probabilities, taken from the same generation as the text.

``model.generate`` runs in a thread feeding an :func:`incremental_streamer` (a ``TextIteratorStreamer`` that
decodes only the new tokens, so a token costs the same at the 4,000th as at the first); the consumer polls
the streamer with a short timeout so an error in the generating thread is re-raised to it instead of leaving
it waiting, and a ``StoppingCriteria`` watching a ``threading.Event`` ends generation at the next token.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gpt2tui.core.device import switched_off
from gpt2tui.core.errors import UserError
from gpt2tui.core.prompt_cache import PromptCache
from gpt2tui.core.store import NAME_RE, ModelInfo

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
"""What the Hub accepts as a model id: ``name`` or ``owner/name``."""

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from gpt2tui.core.card import ModelMetadata
    from gpt2tui.core.sampling import Choice

Strategy = Literal["greedy", "beam", "top-k", "top-p"]
Mode = Literal["chat", "raw"]
"""A chat turn's prompt: the model's Q/A template after the conversation so far, or the text as typed."""
STRATEGIES: tuple[Strategy, ...] = ("greedy", "beam", "top-k", "top-p")
POLL_SECONDS = 0.25
HANDOFF_SECONDS = 0.005
"""The longest the generating thread waits, after the first token, for the reader to take its text."""
ABANDON_JOIN_SECONDS = 60.0
"""The longest an abandoned stream waits for its generating thread (one forward pass: a prefill at most)."""
HANDOFF_ENV = "GPT2TUI_HANDOFF"
"""``default``: the generating thread goes straight on after the first token (the off switch of the wait)."""
StopText = str | Sequence[str] | None
"""One stop text, several, or none (stored in model metadata as a string or a list)."""
MIN_TEMPERATURE = 0.01
"""Below this, softmax of logits / T overflows to inf and sampling fails; greedy is the limit anyway."""
MAX_TEMPERATURE = 100.0
"""Far above this sampling is uniform noise; infinity turns filtered (-inf) logits into NaN."""
REPETITION_PENALTY_RANGE = (0.01, 100.0)
"""Generous around the useful 1-2; below ~1e-38 the penalty is 0 in float32 and sampling fails on inf/NaN."""
MAX_BEAMS = 16
"""Each beam is a sequence decoded in parallel: time and memory grow with the count, without limit."""
MAX_SEED = 2**63 - 1
"""torch seeds are 64-bit; a signed range is the one every consumer of the recorded seed can hold."""


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; ``seed`` None means a fresh random seed per reply (recorded in the reply)."""

    strategy: Strategy = "top-p"
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    num_beams: int = 4
    repetition_penalty: float = 1.0
    max_new_tokens: int = 100
    seed: int | None = None

    def validate(self) -> GenerationSettings:
        """Refuse, with the option's name, any value that would crash or stall generation."""
        if self.strategy not in STRATEGIES:
            raise UserError(f"Unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}.")
        for option, value in (
            ("--temperature", self.temperature),
            ("--top-p", self.top_p),
            ("--repetition-penalty", self.repetition_penalty),
        ):
            if not math.isfinite(value):
                raise UserError(f"{option} must be a finite number, not {value}.")
        low_penalty, high_penalty = REPETITION_PENALTY_RANGE
        checks = [
            (
                self.temperature >= MIN_TEMPERATURE,
                f"--temperature must be at least {MIN_TEMPERATURE}, not {self.temperature}.",
            ),
            (
                self.temperature <= MAX_TEMPERATURE,
                f"--temperature must be at most {MAX_TEMPERATURE:g}, not {self.temperature}.",
            ),
            (self.top_k >= 1, f"--top-k must be at least 1, not {self.top_k}."),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], not {self.top_p}."),
            (self.num_beams >= 1, f"--num-beams must be at least 1, not {self.num_beams}."),
            (
                self.num_beams <= MAX_BEAMS,
                f"--num-beams must be at most {MAX_BEAMS} (each beam is a full reply searched in parallel), "
                f"not {self.num_beams}.",
            ),
            (
                low_penalty <= self.repetition_penalty <= high_penalty,
                f"--repetition-penalty must be from {low_penalty:g} to {high_penalty:g} (1 means no penalty), "
                f"not {self.repetition_penalty}.",
            ),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be at least 1, not {self.max_new_tokens}."),
            (
                self.seed is None or 0 <= self.seed <= MAX_SEED,
                f"--seed must be a whole number from 0 to {MAX_SEED}, not {self.seed}.",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return self

    def replace(self, **changes: Any) -> GenerationSettings:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The strategy and only the parameters it uses, for status lines and transcripts."""
        parts = [self.strategy]
        if self.strategy == "beam":
            parts.append(f"beams={self.num_beams}")
        elif self.strategy != "greedy":
            parts.append(f"T={self.temperature:.2f}")
            parts.append(f"k={self.top_k}" if self.strategy == "top-k" else f"p={self.top_p:.2f}")
        if self.repetition_penalty != 1.0:
            parts.append(f"rep={self.repetition_penalty:.2f}")
        parts.append(f"max={self.max_new_tokens}")
        return " ".join(parts)

    def to_record(self) -> dict[str, Any]:
        """Only the settings the strategy uses, as stored with an evaluation (the seed is stored apart)."""
        record: dict[str, Any] = {"strategy": self.strategy, "max_new_tokens": self.max_new_tokens}
        if self.strategy == "beam":
            record["num_beams"] = self.num_beams
        elif self.strategy != "greedy":
            record["temperature"] = self.temperature
            record["top_k" if self.strategy == "top-k" else "top_p"] = (
                self.top_k if self.strategy == "top-k" else self.top_p
            )
        if self.repetition_penalty != 1.0:
            record["repetition_penalty"] = self.repetition_penalty
        return record

    def choice(self, seed: int) -> Choice | None:
        """How :class:`~gpt2tui.core.sampling.TokenChooser` picks tokens for this strategy (None: beam
        search, which keeps several sequences and has nothing to draw)."""
        from gpt2tui.core.sampling import Choice

        if self.strategy == "beam":
            return None
        if self.strategy == "greedy":
            return Choice(sample=False, seed=seed)
        top_k = int(self.top_k) if self.strategy == "top-k" else 0
        top_p = float(self.top_p) if self.strategy == "top-p" else 1.0
        return Choice(sample=True, temperature=float(self.temperature), top_k=top_k, top_p=top_p, seed=seed)

    def generate_kwargs(self) -> dict[str, Any]:
        # transformers checks the types: an int penalty (2 rather than 2.0) is refused as "not a float".
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(self.max_new_tokens),
            "repetition_penalty": float(self.repetition_penalty),
        }
        temperature = float(self.temperature)
        if self.strategy == "greedy":
            kwargs.update(do_sample=False, num_beams=1)
        elif self.strategy == "beam":
            kwargs.update(do_sample=False, num_beams=int(self.num_beams), early_stopping=True)
        elif self.strategy == "top-k":
            kwargs.update(do_sample=True, top_k=int(self.top_k), top_p=1.0, temperature=temperature)
        else:
            kwargs.update(do_sample=True, top_p=float(self.top_p), top_k=0, temperature=temperature)
        return kwargs


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token: its id, the text it adds to the reply, and its log-probabilities.

    ``logprob`` is the log-probability the token was chosen with (after temperature, top-k and top-p, as in
    :attr:`Reply.tokens`), ``model_logprob`` the one under the model's own distribution (as in
    :attr:`Reply.model_logprobs`); both come from the scores of the generation that chose the token, never
    from a second pass, and both are None where nothing drew the token (beam search). ``text`` is "" for a
    token that adds no text by itself: a byte of a character that a later token completes (the text goes to
    that token), or a special token such as end-of-text.
    """

    id: int
    text: str
    logprob: float | None = None
    model_logprob: float | None = None


class Chunk(str):
    """A piece of a reply's text (a ``str``, so every consumer of text chunks takes it as before) with the
    tokens that produced it, in order: ``Chunk(text, tokens)``.

    :class:`ReplyStream` yields these. Each generated token is in exactly one chunk, and the tokens of all
    chunks, in order, are the reply's (:attr:`Reply.tokens`, with the same ids and log-probabilities). A
    chunk's tokens' texts join to its text, with two exceptions at a reply's end: the chunk a stop text cuts
    carries the tokens received so far, the stop text's own included, so their texts join to its text
    followed by the hidden stop text (and whatever came with it); and a reply may end with a chunk whose text
    is "" that carries the tokens that came after (end-of-text, or tokens generated while the stop was being
    noticed). Equality and hashing are those of the text alone.
    """

    __slots__ = ("tokens",)
    tokens: tuple[Token, ...]

    def __new__(cls, text: str = "", tokens: Iterable[Token] = ()) -> Chunk:
        chunk = super().__new__(cls, text)
        chunk.tokens = tuple(tokens)
        return chunk


def _chunk_of(text: str, ids: Sequence[int]) -> Chunk:
    """The streamer's chunk: ``text`` belongs to the last of ``ids`` (the token that completed it)."""
    if not ids:
        return Chunk(text)
    return Chunk(text, [*(Token(i, "") for i in ids[:-1]), Token(ids[-1], text)])


@dataclass
class Reply:
    """What one generation produced, filled in when its stream ends."""

    text: str = ""
    new_tokens: int = 0
    seconds: float = 0.0
    stopped: bool = False  # ended by the stop event (partial text)
    seed: int = 0
    prompt_tokens: int = 0
    prompt_trimmed: int = 0
    """Tokens cut from the start of the prompt so that it and the reply fit the context (0: none were)."""
    room: int = 0
    """The most new tokens the reply could have: the max-new-tokens setting, or fewer where the context
    left fewer after the prompt (0: not recorded)."""
    tokens: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    """(token id, log-probability) of each generated token, from the generation itself (not for beam), under
    the distribution it was drawn from (after temperature, top-k, top-p)."""
    model_logprobs: list[float] = dataclasses.field(default_factory=list)
    """Each of ``tokens``' log-probability under the model's own distribution, before temperature, top-k and
    top-p (equal to the drawn one for greedy): what coherence is measured on."""
    pieces: list[str] = dataclasses.field(default_factory=list)
    """The text each of ``tokens`` added (see :func:`token_pieces`); empty when ``tokens`` is."""
    threads: int = 0
    """The CPU threads ``generate`` computed with (0: not recorded)."""
    shown_tokens: int = 0
    """How many of the reply's first tokens make up ``text``: a reply cut at its stop text leaves out the
    stop's tokens (and, for beam search, which cannot end at a stop text, those after it), an end-of-text
    token adds no text. Figures measured over the reply's tokens (eval's coherence, the grid's) count these."""
    cached_tokens: int = 0
    """Prompt tokens whose keys and values an earlier generation had computed (``core.prompt_cache``): the
    prefill computed only ``prompt_tokens - cached_tokens``."""

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoadedModel:
    """A model ready to generate, with the prompt template and stop text its training data implied."""

    name: str
    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    metadata: ModelMetadata
    prompt_cache: PromptCache = dataclasses.field(default_factory=PromptCache, repr=False, compare=False)
    """The keys and values of this model's last generation, reused by the next prompt that starts the same."""

    @property
    def template(self) -> str | None:
        return self.metadata.formatting.prompt_template

    @property
    def stop_text(self) -> StopText:
        return self.metadata.formatting.stop_text

    @property
    def context_length(self) -> int:
        from gpt2tui.core.models import context_length

        return context_length(self.model.config)

    def reply(
        self,
        mode: Mode,
        message: str,
        history: list[tuple[str, str]],
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        batch_seconds: float = 0.0,
    ) -> ReplyStream:
        """A chat turn generated in this process (``core.generator`` does the same in a child process)."""
        return turn_stream(self, mode, message, history, settings, stop, batch_seconds)


HUB_CHOICES = "name a stored model ('gpt2tui models list') or a local save_pretrained folder"
"""How a Hub failure ends where a model is named for generation or evaluation (no stored model has the name)."""


class HubModel(ModelInfo):
    """A model named by its Hub id: not on disk until loaded (``path`` is the id until then)."""


def resolve(ref: str) -> ModelInfo:
    """A stored model by name, any model folder by path, or else a Hugging Face Hub id (``user/repo``, or a
    bare id such as ``gpt2``): Hub ids are looked up when loaded, in the cache first."""
    from gpt2tui.core.card import ModelMetadata
    from gpt2tui.core.models import base_kind
    from gpt2tui.core.store import ModelStore

    store = ModelStore()
    try:
        return store.resolve(ref)
    except UserError:
        stored = NAME_RE.fullmatch(ref) is not None and (store.root / ref).exists()  # even a broken one
        if stored or base_kind(ref) != "hub" or not HUB_ID.fullmatch(ref):
            raise
        not_yet = not_stored_yet(ref)
        if not_yet is not None:
            raise not_yet from None
    return HubModel(ref, Path(ref), ModelMetadata(name=ref, base=ref, base_kind="hub"))


def not_stored_yet(name: str) -> UserError | None:
    """Why ``name`` is no stored model when a run is to write it (rather than a Hub lookup's failure)."""
    from gpt2tui.core.runs import name_owner

    if NAME_RE.fullmatch(name) is None:
        return None
    run = name_owner(name)
    if run is None:
        return None
    if run.status().live:
        return UserError(
            f"The model '{name}' is not stored yet: the run {run.id} is training it and stores it when it ends "
            f"('gpt2tui runs attach {run.id}' follows it)."
        )
    return UserError(
        f"The model '{name}' is not stored yet: the run {run.id} ({run.status().state}) stores it once resumed "
        f"('gpt2tui runs resume {run.id}')."
    )


def load_resolved(info: ModelInfo) -> LoadedModel:
    """Load what :func:`resolve` found: a folder directly, a Hub id through the Hugging Face cache.

    The process then keeps freed memory for reuse (``core.device.keep_freed_memory``): a growing key/value
    cache otherwise costs fresh pages at every token. And what is loaded now lives as long as the process, so
    the cycle collector stops scanning it (``core.device.freeze_heap``): a full collection of the libraries'
    objects held the GIL 180 ms in the middle of a streamed reply.
    """
    from gpt2tui.core.device import freeze_heap, keep_freed_memory

    keep_freed_memory()
    loaded = _load_info(info)
    freeze_heap()
    return loaded


def _load_info(info: ModelInfo) -> LoadedModel:
    from gpt2tui.core.models import load_model

    if isinstance(info, HubModel):
        from gpt2tui.core.models import hub_metadata_folder, load_hub, prepare_for_inference
        from gpt2tui.core.store import read_metadata

        model, tokenizer = prepare_for_inference(*load_hub(info.name, HUB_CHOICES))
        # A model pushed by gpt2tui carries its gpt2tui.json: its prompt template and stop text come back with it.
        folder = hub_metadata_folder(info.name)
        metadata = info.metadata
        if folder is not None:
            metadata = dataclasses.replace(read_metadata(folder), name=info.name)
        return LoadedModel(info.name, Path(model.name_or_path), model, tokenizer, metadata)
    model, tokenizer = load_model(info.path)
    return LoadedModel(info.name, info.path, model, tokenizer, info.metadata)


def load(ref: str) -> LoadedModel:
    """Resolve ``ref`` (stored name, folder, or Hub id) and load it for generation."""
    return load_resolved(resolve(ref))


def covering(pieces: Sequence[str], length: int) -> int:
    """How many of the tokens whose texts are ``pieces`` it takes to make the first ``length`` characters."""
    at = 0
    for n, piece in enumerate(pieces):
        if at >= length:
            return n
        at += len(piece)
    return len(pieces)


def prompt_budget(context: int, max_new_tokens: int) -> int:
    """The one context rule: the prompt may always keep half the context, and more when the reply is set to
    need less; new tokens get the rest, up to the setting."""
    return context - min(max_new_tokens, context - context // 2)


class _StopOn:
    """A ``StoppingCriteria`` that ends generation once either event is set."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _StopOnText:
    """A ``StoppingCriteria`` that ends generation at the token whose text completes a stop text.

    It runs in the generating thread right after the streamer took the token, so generation ends at that
    token: before, the reader noticed the stop text and set an event, and the tokens generated meanwhile (how
    many depended on timing, up to a dozen in the chat, which reads a few times a second) were counted in the
    reply, kept in the prompt cache, and computed for nothing.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.longest = max(len(stop) for stop in stops)
        self.recent = ""  # the emitted text's tail: long enough to hold a stop text ending in the newest text
        self.seen = False

    def emitted(self, text: str) -> None:
        """The streamer emitted ``text`` (in the generating thread)."""
        self.recent = self.recent[-(self.longest - 1) :] + text if self.longest > 1 else text
        self.seen = self.seen or any(stop in self.recent for stop in self.stops)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.seen, dtype=torch.bool, device=input_ids.device)


def _stops(stop_text: StopText) -> tuple[str, ...]:
    if not stop_text:
        return ()
    return (stop_text,) if isinstance(stop_text, str) else tuple(s for s in stop_text if s)


def _first_stop(text: str, stops: tuple[str, ...], start: int = 0) -> int:
    """Where the earliest stop text starts in ``text`` (at or after ``start``), or -1."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else -1


def _held_back(text: str, stop_text: StopText) -> int:
    """How many trailing characters could be the start of a stop text (so must not be shown yet)."""
    longest = 0
    for stop in _stops(stop_text):
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


REPLACEMENT_CHARACTER = "\ufffd"
"""What a decoder writes for bytes that are not (yet) a whole UTF-8 character."""
MAX_PENDING_TOKENS = 4
"""An unfinished UTF-8 character has at most 3 bytes so far, so it spans at most 3 held tokens."""


@cache
def incremental_streamer() -> type[Any]:
    """The ``TextIteratorStreamer`` subclass that decodes only new tokens (built once: transformers is lazy).

    HF's ``TextStreamer.put`` appends each token to a cache and decodes the *whole* cache, every token, until
    a newline empties it: a reply with no newline costs O(n^2) decoding (1.1 s of pure decoding over 4,096
    tokens). This subclass keeps two offsets into the generated ids, as text-generation-inference does:
    ``prefix`` (where the last emitted window started, kept as context for decoders whose output depends on
    the previous token, e.g. SentencePiece's leading space) and ``read`` (how far text was emitted). Each
    token decodes only ``ids[prefix:]`` and ``ids[prefix:read]``, a few tokens, and emits the difference.

    Byte-level BPE splits multi-byte characters (emoji, CJK) across tokens; a window ending mid-character
    decodes to U+FFFD, so the token is held (the window grows by one) until a later token completes the
    character. The window only grows while no whole character has ended; a reply of bytes that never make a
    character (an untrained model repeating a lead byte) is cut at the last clean token boundary once more
    tokens are held than a character has bytes, so the window stays a handful of tokens whatever the text.

    What it queues are :class:`Chunk` s: each emitted text with the tokens it decodes (the ids from the last
    emitted one up to the one that completed the text, which gets the text; the others get ""), without
    log-probabilities, which the streamer never sees. Every token put is in exactly one queued chunk; one
    whose ids add no text (special tokens, or a stuck window cut before them) can be queued with text "".
    The concatenated output equals ``tokenizer.decode(all_ids, **decode_kwargs)`` byte for byte: lossy
    UTF-8 decoding restarts cleanly after a complete character, which is exactly where windows are cut, and
    anything still held at the end (an incomplete character) is decoded as the whole decode would.
    """
    from transformers import TextIteratorStreamer

    class IncrementalTextIteratorStreamer(TextIteratorStreamer):  # type: ignore[misc]
        """Streams the text of new tokens as they arrive, at a constant cost per token."""

        def __init__(
            self,
            tokenizer: PreTrainedTokenizerBase,
            skip_prompt: bool = False,
            timeout: float | None = None,
            handed_over: threading.Event | None = None,
            stop_on_text: _StopOnText | None = None,
            **decode_kwargs: Any,
        ) -> None:
            super().__init__(tokenizer, skip_prompt, timeout, **decode_kwargs)
            self.stop_on_text = stop_on_text  # told each emitted text, in this (the generating) thread
            self.ids: list[int] = []
            self.prefix = 0
            self.read = 0
            self.prefix_text = ""
            self.handed_over = handed_over  # set by the reader once it has taken the first text

        def put(self, value: Any) -> None:
            if len(value.shape) > 1 and value.shape[0] > 1:
                raise ValueError("TextStreamer only supports batch size 1")
            if len(value.shape) > 1:
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.ids.extend(value.tolist())
            text = self._decode(self.prefix)
            if not text.endswith(REPLACEMENT_CHARACTER):
                if len(text) > len(self.prefix_text):
                    self._emit(text[len(self.prefix_text) :], len(self.ids))
            elif len(self.ids) - self.read > MAX_PENDING_TOKENS:
                self._cut_stuck_window(text)

        def end(self) -> None:
            """Emit what is held (an unfinished character decodes to U+FFFD, as in the whole decode)."""
            text = self._decode(self.prefix) if self.read < len(self.ids) else self.prefix_text
            new = _chunk_of(text[len(self.prefix_text) :], self.ids[self.read :])
            self.ids, self.prefix, self.read, self.prefix_text = [], 0, 0, ""
            self.next_tokens_are_prompt = True
            self.on_finalized_text(new, stream_end=True)

        def _decode(self, start: int, stop: int | None = None) -> str:
            return str(self.tokenizer.decode(self.ids[start:stop], **self.decode_kwargs))

        def _emit(self, new: str, upto: int) -> None:
            """Emit ``new`` (the text of the ids before ``upto``) with those ids from ``read`` on (even when
            they add no text, so that every token is queued once); the window then starts where it began."""
            chunk = _chunk_of(new, self.ids[self.read : upto])
            # The tokens just emitted stay as the context the next token is decoded after.
            self.prefix, self.read = self.read, upto
            self.prefix_text = self._decode(self.prefix, self.read)
            if self.prefix > 0:
                del self.ids[: self.prefix]  # keep the list as short as the window
                self.read -= self.prefix
                self.prefix = 0
            if self.stop_on_text is not None:
                self.stop_on_text.emitted(new)
            self.on_finalized_text(chunk)
            if self.handed_over is not None:  # the first text only: see ReplyStream.__iter__
                self.handed_over.wait(HANDOFF_SECONDS)
                self.handed_over = None

        def _cut_stuck_window(self, text: str) -> None:
            """More tokens held than an unfinished character has bytes: emit up to the last clean cut.

            A reply of bytes that never make a whole character (a lead byte repeated: each one becomes
            U+FFFD for good once the next byte arrives) would otherwise be held, and re-decoded, to the end.
            A cut before token ``t`` is clean when decoding both sides apart gives the same text as decoding
            them together: the bytes before ``t`` are then final whatever comes after.
            """
            for cut in range(len(self.ids) - 1, self.read, -1):
                head = self._decode(self.prefix, cut)
                if head + self._decode(cut) == text:
                    self._emit(head[len(self.prefix_text) :], cut)
                    return

    return IncrementalTextIteratorStreamer


def token_pieces(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """The text each token adds to the decoded reply: the pieces join to ``decode(ids)`` exactly.

    Decoded one token at a time by the incremental streamer, so the cost is linear in the reply; a character
    whose bytes span several tokens belongs to the token that completed it (the others add ""). The texts
    are those of a streamed reply's :class:`Token` s for the same ids.
    """
    if not ids:
        return []
    import torch

    emitted: list[Token] = []
    streamer = incremental_streamer()(tokenizer, skip_prompt=False, skip_special_tokens=True)
    streamer.on_finalized_text = lambda chunk, stream_end=False: emitted.extend(chunk.tokens)
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    return [token.text for token in emitted]


class ReplyStream:
    """Iterate for :class:`Chunk` s (text, with its tokens) as they are generated; ``reply`` holds the totals
    once iteration ends.

    Chunks are cut at token boundaries: text held back because it may start a stop text holds back its whole
    token, which rides with the chunk that finally shows it. The log-probabilities are those
    :class:`~gpt2tui.core.sampling.TokenChooser` recorded while choosing each token. Beam search streams
    nothing: its one chunk comes at the end, its tokens with no log-probabilities (no draw chose them), and
    ``reply.tokens`` stays empty.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        *,
        template: str | None = None,
        stop_text: StopText = None,
        batch_seconds: float = 0.0,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.text = template.format(prompt=prompt) if template else prompt
        self.settings = settings.validate()
        self.stop = stop or threading.Event()
        self.stop_text = _stops(stop_text)
        self.batch_seconds = batch_seconds
        self.prompt_cache = prompt_cache
        self.reply = Reply(seed=settings.seed if settings.seed is not None else secrets.randbelow(2**31))

    def _inputs(self) -> tuple[Any, int]:
        """Prompt ids trimmed from the left so prompt + new tokens fit the context.

        The prompt always keeps up to half the context (so a large max-new-tokens never crowds out the
        question); new tokens get the rest, up to the setting.
        """
        import torch

        from gpt2tui.core.models import context_length

        ctx = context_length(self.model.config)
        ids = self.tokenizer(self.text, add_special_tokens=False)["input_ids"]
        kept = ids[-prompt_budget(ctx, self.settings.max_new_tokens) :]
        self.reply.prompt_trimmed = len(ids) - len(kept)
        ids = kept or [self.tokenizer.eos_token_id]
        max_new = max(1, min(self.settings.max_new_tokens, ctx - len(ids)))
        device = next(self.model.parameters()).device
        return torch.tensor([ids], device=device), max_new

    def _cache(self, input_ids: Any, max_new: int) -> Any:
        """The key/value cache to generate with: the prompt cache's (its shared prefix already computed), a
        growing one, or one to keep; None: ``generate``'s own."""
        from gpt2tui.core.kv_cache import growing_cache, plain_cache, reserve

        limit = int(input_ids.shape[1]) + max_new
        if self.prompt_cache is not None:
            kv, self.reply.cached_tokens = self.prompt_cache.take(input_ids[0].tolist())
            if kv is not None:
                reserve(kv, limit)
                return kv
        # One that grows in place instead of copying itself at every token (core/kv_cache.py).
        kv = growing_cache(self.model, limit=limit)
        if kv is None and self.prompt_cache is not None:
            kv = plain_cache(self.model)
        return kv

    def __iter__(self) -> Iterator[Chunk]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from gpt2tui.core.sampling import TokenChooser

        input_ids, max_new = self._inputs()
        self.reply.prompt_tokens = int(input_ids.shape[1])
        self.reply.room = max_new
        halt = threading.Event()  # set when the stop text appears
        streaming = self.settings.strategy != "beam"  # beam search has no single sequence to stream
        # After the first token the generating thread waits (at most HANDOFF_SECONDS) for this thread to take
        # its text before it computes the next: on two cores its torch threads would otherwise hold both, and
        # the text the user waits for reached the reader 3.4 ms later (median; up to the GIL's 5 ms switch
        # interval); now 0.3 ms (bench/stream_chat.py, first character).
        handed_over = None if switched_off(HANDOFF_ENV) else threading.Event()
        stop_on_text = _StopOnText(self.stop_text) if self.stop_text and streaming else None
        streamer = incremental_streamer()(
            self.tokenizer,
            skip_prompt=True,
            skip_special_tokens=True,
            timeout=POLL_SECONDS,
            handed_over=handed_over,
            stop_on_text=stop_on_text,
        )
        kwargs = {
            **self.settings.generate_kwargs(),
            "max_new_tokens": max_new,
            "attention_mask": torch.ones_like(input_ids),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList(
                [_StopOn(self.stop, halt), *([stop_on_text] if stop_on_text is not None else [])]
            ),
        }
        kv = None
        if streaming:
            kwargs["streamer"] = streamer
            kv = self._cache(input_ids, max_new)
            if kv is not None:
                kwargs["past_key_values"] = kv
        choice = self.settings.choice(self.reply.seed)
        chooser = TokenChooser(choice, input_ids.device) if choice is not None else None
        if chooser is not None:  # the chooser draws with its own generator; generate only takes its pick
            for key in ("temperature", "top_k", "top_p"):
                kwargs.pop(key, None)
            kwargs.update(do_sample=False, logits_processor=LogitsProcessorList([chooser]))
        outcome: dict[str, Any] = {}

        def run() -> None:
            self.reply.threads = torch.get_num_threads()  # this thread's: what its matmuls run on
            try:
                with torch.inference_mode():
                    outcome["ids"] = self.model.generate(input_ids, **kwargs)
            except BaseException as err:  # re-raised in the consumer
                outcome["error"] = err
                if streaming:
                    streamer.end()

        started = time.perf_counter()
        thread = threading.Thread(target=run, daemon=True, name="gpt2tui-generate")
        thread.start()
        shown = 0
        text = ""
        pending: list[Token] = []  # received, not yet yielded: their texts join to text[shown:] (until a cut)
        streamed: list[Token] = []  # every token received, in order

        def take(items: list[Any]) -> str:
            """The text of the streamer's chunks; their tokens, with the chooser's log-probabilities, go to
            ``pending``."""
            tokens = [token for item in items for token in getattr(item, "tokens", ())]
            if tokens:
                received = len(streamed)  # the index of the first of them in the chooser's records
                records = chooser.span(received, received + len(tokens)) if chooser is not None else []
                for at, token in enumerate(tokens):
                    if at < len(records) and records[at][0] == token.id:
                        token = Token(token.id, token.text, records[at][1], records[at][2])
                    pending.append(token)
                    streamed.append(token)
            return "".join(items)

        def upto(end: int) -> int:
            """How many pending tokens to yield for text up to ``end``: whole tokens only, so that a chunk's
            tokens' texts join to its text; tokens adding no text ride with the token after them (the one
            completing their character) or, when only such tokens follow, with the chunk."""
            count, at = 0, shown
            for i, token in enumerate(pending):
                at += len(token.text)
                if at > end:
                    return count
                if token.text:
                    count = i + 1
            return len(pending)

        longest_stop = max((len(s) for s in self.stop_text), default=0)
        ended = not streaming
        dead_polls = 0
        yielded_at: float | None = None
        try:
            while not ended:
                if handed_over is not None and streamed:
                    handed_over.set()  # the first text is taken (and yielded, unless held back)
                    handed_over = None  # once: the generating thread waits only after the first token
                if self.batch_seconds and yielded_at is not None:
                    # Let tokens gather instead of waking for each one: this thread then takes the GIL a
                    # few times a second, not once per token, from the thread running ``generate``.
                    wait = yielded_at + self.batch_seconds - time.perf_counter()
                    if wait > 0:
                        self.stop.wait(wait)
                try:
                    pieces = [streamer.text_queue.get(timeout=POLL_SECONDS)]
                except queue.Empty:
                    # A finished thread has queued everything and the end signal: keep reading until it.
                    # Only a thread that died without ending the stream could leave us waiting.
                    if not thread.is_alive() and dead_polls > 0:
                        break
                    dead_polls += 0 if thread.is_alive() else 1
                    continue
                # Take every chunk already queued: one pass of the stop-text logic (and one wake-up of
                # this thread) per batch, not per token, when the consumer falls behind.
                while not streamer.text_queue.empty():
                    pieces.append(streamer.text_queue.get_nowait())
                if any(piece is streamer.stop_signal for piece in pieces):
                    pieces = pieces[: next(i for i, p in enumerate(pieces) if p is streamer.stop_signal)]
                    ended = True
                chunk = take(pieces)
                if not chunk:
                    continue
                # A stop text can only start in the new chunk or in the held-back tail before it.
                search_from = max(0, len(text) - longest_stop + 1)
                text += chunk
                cut = _first_stop(text, self.stop_text, search_from)
                if cut >= 0:
                    text = text[:cut]
                    halt.set()
                    if cut > shown:  # with every token so far: the stop text's own are never shown
                        yield Chunk(text[shown:cut], pending)
                        pending = []
                    shown = cut
                    break
                count = upto(len(text) - _held_back(text, self.stop_text))
                end = shown + sum(len(token.text) for token in pending[:count])
                if end > shown:
                    yield Chunk(text[shown:end], pending[:count])
                    del pending[:count]
                    shown = end
                    yielded_at = time.perf_counter()
            thread.join()
            if "error" in outcome:
                raise outcome["error"]
            if self.prompt_cache is not None and kv is not None:  # only a generation that ended normally
                self.prompt_cache.store(outcome["ids"][0].tolist(), kv)
            while not streamer.text_queue.empty():  # what came after a stop text, unread
                item = streamer.text_queue.get_nowait()
                if item is not streamer.stop_signal:
                    take([item])
            ids = outcome["ids"][0][input_ids.shape[1] :]
            if not streaming:  # beam search: one chunk, its tokens without log-probabilities (none drew them)
                token_ids = ids.tolist()
                texts = token_pieces(self.tokenizer, token_ids)
                pending = [Token(i, t) for i, t in zip(token_ids, texts, strict=True)]
                text = "".join(token.text for token in pending)
                cut = _first_stop(text, self.stop_text)
                text = text[:cut] if cut >= 0 else text
            # What was held back as a possible stop text, once generation has ended, and the tokens left.
            if len(text) > shown or pending:
                yield Chunk(text[shown:], pending)
            self.reply.text = text
            self.reply.new_tokens = int(ids.shape[0])
            self.reply.tokens = chooser.snapshot(self.reply.new_tokens) if chooser is not None else []
            self.reply.model_logprobs = (
                chooser.model_snapshot(self.reply.new_tokens) if chooser is not None else []
            )
            chosen = [token for token, _ in self.reply.tokens]
            # The stream decoded each token's text as it came: decoding the whole reply again is not needed.
            streamed_ids = [token.id for token in streamed]
            streamed_texts = [token.text for token in streamed]
            self.reply.pieces = (
                streamed_texts if streamed_ids == chosen else token_pieces(self.tokenizer, chosen)
            )
            self.reply.shown_tokens = covering(streamed_texts if streaming else texts, len(text))
        finally:
            halt.set()
            if handed_over is not None:
                handed_over.set()
            # Abandoned (the reader left: a closed pipe, a client gone): wait for ``generate`` to see the halt
            # at its next token. A process that exits with it still inside torch aborts ("terminate called
            # without an active exception", exit 134, as `gpt2tui generate | head` did), and a server's next
            # request would otherwise compute beside it on the same model.
            thread.join(ABANDON_JOIN_SECONDS)
            self.reply.seconds = time.perf_counter() - started
            self.reply.stopped = self.stop.is_set()


def stream(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    settings: GenerationSettings,
    stop: threading.Event | None = None,
    *,
    template: str | None = None,
    stop_text: StopText = None,
    batch_seconds: float = 0.0,
    prompt_cache: PromptCache | None = None,
) -> ReplyStream:
    """Start nothing yet: iterating the returned stream runs generation and yields its :class:`Chunk` s.

    ``batch_seconds`` > 0: after a chunk, wait that long (or until ``stop`` is set) and yield what arrived
    meanwhile as one chunk. The first chunk still comes as soon as its token; a reader that only shows text
    a few times a second (the chat screen) then costs the generating thread nothing per token.
    ``prompt_cache``: the model's :class:`~gpt2tui.core.prompt_cache.PromptCache`, to compute only the part
    of the prompt the previous generation had not (and keep this one's for the next).
    """
    return ReplyStream(
        model,
        tokenizer,
        prompt,
        settings,
        stop,
        template=template,
        stop_text=stop_text,
        batch_seconds=batch_seconds,
        prompt_cache=prompt_cache,
    )


def complete(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    settings: GenerationSettings,
    *,
    template: str | None = None,
    stop_text: StopText = None,
) -> str:
    """The whole reply at once (training samples, tests)."""
    return "".join(stream(model, tokenizer, prompt, settings, template=template, stop_text=stop_text))


def turn_stream(
    loaded: LoadedModel,
    mode: Mode,
    message: str,
    history: list[tuple[str, str]],
    settings: GenerationSettings,
    stop: threading.Event | None = None,
    batch_seconds: float = 0.0,
) -> ReplyStream:
    """One chat turn: in chat mode the conversation in the model's template (its stop text ends the reply),
    in raw mode the message as typed."""
    if mode == "chat":
        prompt = chat_prompt(history, message, loaded, settings.max_new_tokens)
        stop_text = loaded.stop_text
    else:
        prompt, stop_text = message, None
    return stream(
        loaded.model,
        loaded.tokenizer,
        prompt,
        settings,
        stop,
        stop_text=stop_text,
        batch_seconds=batch_seconds,
        prompt_cache=loaded.prompt_cache,
    )


def chat_prompt(
    history: list[tuple[str, str]],
    message: str,
    loaded: LoadedModel,
    max_new_tokens: int,
) -> str:
    """The conversation so far plus ``message``, oldest turns dropped until it fits the context.

    Turns are written the way the model was trained (its template, each answer closed by end-of-text), so a
    Q/A model sees familiar text; the result is passed with ``template=None``.
    """
    template = loaded.template or "{prompt}"
    eos = loaded.tokenizer.eos_token or ""
    ctx = loaded.context_length
    budget = prompt_budget(ctx, max_new_tokens)

    def length(text: str) -> int:
        return len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    current = template.format(prompt=message)
    used = length(current)
    kept: list[str] = []
    for q, a in reversed(history):  # newest first; each turn is tokenized once
        turn = (
            template.format(prompt=q) + (" " if loaded.template and not a.startswith(" ") else "") + a + eos
        )
        used += length(turn)
        if used > budget:
            break
        kept.append(turn)
    return "".join(reversed(kept)) + current
