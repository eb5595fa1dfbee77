"""``gpt2tui serve``: stored models behind the OpenAI HTTP API (``/v1/completions``, ``/v1/chat/completions``).

Why these pieces:

- **starlette on uvicorn.** A small, well-kept ASGI stack: routing, JSON and ``StreamingResponse`` for
  server-sent events, no pydantic. Requests are parsed by hand here, so every refusal is one sentence that
  names the OpenAI field (the core's CLI-worded checks are re-worded, not duplicated).
- **One queue per model.** A GPT-2 on a CPU already uses every core for one sequence, and a generation holds
  the GIL between tensor operations, so two generations at once only interleave. Each served model has one
  worker thread; requests wait their turn in arrival order (a request's ``n`` choices stay together).
- **Stopping.** Every request owns a ``threading.Event`` handed to ``core.generation.stream``: a client that
  disconnects (seen by the ASGI ``http.disconnect`` message, while streaming, waiting in the queue or waiting
  for a whole reply) sets it, and generation ends at the next token; a queued request is dropped unstarted.
  Ctrl+C / SIGTERM set every request's event, so in-flight replies end at once with an error the client sees,
  and the process exits 0.
- **Context.** One rule, the chat screen's (``core.generation.prompt_budget``): the prompt keeps up to half
  the context, more when the reply needs less; longer prompts lose their oldest tokens (oldest turns first
  for chat). A ``max_tokens`` that cannot fit beside what the prompt keeps is refused with a 400.
- **Safety.** 127.0.0.1 unless ``--host`` says otherwise (a warning when that is not loopback and there is no
  API key); bodies over :data:`MAX_BODY_BYTES` get a 413; the API key is compared in constant time and never
  printed or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpt2tui import __version__
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import MIN_TEMPERATURE, GenerationSettings, prompt_budget
from gpt2tui.core.prompt_cache import SERVE_CACHES, PromptCache

if TYPE_CHECKING:
    from gpt2tui.core.generation import LoadedModel, Reply
    from gpt2tui.core.store import ModelInfo

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
API_KEY_ENV = "GPT2TUI_API_KEY"
"""Where ``--api-key`` is read from when not given (the command line is visible to other users in ``ps``)."""
MAX_BODY_BYTES = 1_048_576
"""A request body larger than this is refused with 413: GPT-2's context is 1,024 tokens (a few KB of text)."""
MAX_CHOICES = 16
"""``n`` times the number of prompts: each choice is a whole generation, run one after another."""
MAX_STOP_TEXTS = 16
SYSTEM_ROLES = ("system", "developer")
"""Roles the chat template may leave out; when old turns are dropped to fit the context these are kept."""
SHUTDOWN_GRACE_SECONDS = 5
"""How long uvicorn waits for in-flight responses once they have been told to stop (they end at the next
token, so this is only reached by a client that stops reading)."""
FINGERPRINT = f"gpt2tui-{__version__}"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# What the core's one-sentence checks call a setting, and the OpenAI field it comes from here.
CLI_OPTIONS_AS_FIELDS = {
    "--temperature": "temperature",
    "--top-p": "top_p",
    "--top-k": "top_k",
    "--num-beams": "num_beams",
    "--repetition-penalty": "repetition_penalty",
    "--max-new-tokens": "max_tokens",
    "--seed": "seed",
}

CLIENT_LEFT = "client disconnected"
SHUTTING_DOWN = "server shutting down"

log = logging.getLogger("gpt2tui.serve")


# ------------------------------------------------------------------------------------------------ errors


class ApiError(Exception):
    """An answer in OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        if self.status == 503:
            headers = {"Retry-After": "1"}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param)


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


# ------------------------------------------------------------------------------------ request fields


class Fields:
    """The JSON body's fields, read with one-sentence refusals; ``null`` counts as absent."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get(self, name: str) -> Any:
        return self.body.get(name)

    def number(self, name: str) -> float | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"{name} must be a number, not {json.dumps(value)}.", name)
        if not math.isfinite(value):  # Python's JSON reads NaN and Infinity; NaN passed every bound check
            raise bad(f"{name} must be a finite number, not {value}.", name)
        return float(value)

    def integer(self, name: str) -> int | None:
        value = self.body.get(name)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"{name} must be a whole number, not {json.dumps(value)}.", name)
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise bad(f"{name} must be true or false, not {json.dumps(value)}.", name)
        return value

    def unsupported(self, name: str, why: str, allowed: Callable[[Any], bool]) -> None:
        value = self.body.get(name)
        if value is not None and not allowed(value):
            raise bad(f"{name} is not supported: {why}", name)

    def stop_texts(self) -> tuple[str, ...]:
        value = self.body.get("stop")
        if value is None:
            return ()
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise bad("stop must be a string or a list of strings.", "stop")
        if len(texts) > MAX_STOP_TEXTS:
            raise bad(f"stop may hold at most {MAX_STOP_TEXTS} texts, not {len(texts)}.", "stop")
        return tuple(t for t in texts if t)


def _settings(fields: Fields, max_tokens_field: str) -> tuple[GenerationSettings, int | None, int]:
    """The decoding settings of a request (without its seed), the explicit ``max_tokens`` (or None), and ``n``.

    OpenAI's fields map onto gpt2tui's strategies: temperature 0 (below 0.01) is greedy; ``top_k`` (an
    extension) is top-k sampling; otherwise top-p sampling with ``top_p`` and ``temperature``; ``num_beams``
    (an extension) above 1 is beam search. Fields left out take ``gpt2tui generate``'s defaults.
    """
    settings = GenerationSettings()
    temperature = fields.number("temperature")
    top_p = fields.number("top_p")
    top_k = fields.integer("top_k")
    beams = fields.integer("num_beams")
    penalty = fields.number("repetition_penalty")
    max_tokens = fields.integer(max_tokens_field)
    n = fields.integer("n")
    if n is None:
        n = 1
    if not 1 <= n <= MAX_CHOICES:
        raise bad(f"n must be from 1 to {MAX_CHOICES}, not {n}.", "n")
    if temperature is not None and temperature < 0:
        raise bad(f"temperature must be at least 0, not {temperature:g}.", "temperature")
    for name in ("presence_penalty", "frequency_penalty"):
        fields.unsupported(
            name,
            "gpt2tui has repetition_penalty instead (an extension field; 1 means none).",
            lambda v: v == 0,
        )
    fields.unsupported("logit_bias", "gpt2tui cannot bias single tokens.", lambda v: v == {})
    if penalty is not None:
        settings = settings.replace(repetition_penalty=penalty)
    if max_tokens is not None:
        settings = settings.replace(max_new_tokens=max_tokens)
    if temperature is not None and temperature >= MIN_TEMPERATURE:
        settings = settings.replace(temperature=temperature)
    if beams is not None and beams != 1:  # deterministic: a temperature of 0 (as clients send for it) is fine
        settings = settings.replace(strategy="beam", num_beams=beams)
    elif temperature is not None and temperature < MIN_TEMPERATURE:
        settings = settings.replace(strategy="greedy")
    elif top_k is not None:
        if top_p is not None and top_p != 1:
            raise bad(
                "top_k and top_p cannot be combined: gpt2tui samples with one of them (leave top_p out, or set "
                "it to 1, to sample with top_k).",
                "top_k",
            )
        settings = settings.replace(strategy="top-k", top_k=top_k)
    elif top_p is not None:
        settings = settings.replace(strategy="top-p", top_p=top_p)
    validated(settings, max_tokens_field)
    return settings, max_tokens, n


def validated(settings: GenerationSettings, max_tokens_field: str = "max_tokens") -> GenerationSettings:
    """The core's validation, its sentence worded with the request's field names."""
    try:
        return settings.validate()
    except UserError as err:
        message = str(err)
        for option, name in CLI_OPTIONS_AS_FIELDS.items():
            if message.startswith(option):
                name = max_tokens_field if name == "max_tokens" else name
                raise bad(name + message[len(option) :], name) from None
        raise bad(message) from None


def _seed(fields: Fields) -> int:
    seed = fields.integer("seed")
    if seed is None:
        return secrets.randbelow(2**31)
    validated(GenerationSettings(seed=seed))
    return seed


# -------------------------------------------------------------------------------------------- models


@dataclass
class ServedModel:
    """A model named on the command line: loading, then ready (or failed, which ends the server)."""

    name: str
    info: ModelInfo
    created: int = field(default_factory=lambda: int(time.time()))
    state: str = "loading"
    loaded: LoadedModel | None = None
    planner: Any = None  # a copy of the tokenizer for the event loop's side: never shared with generation
    planner_lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor | None = None

    def ready(self, loaded: LoadedModel) -> None:
        import copy

        self.planner = copy.deepcopy(loaded.tokenizer)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"gpt2tui-serve-{self.name}")
        self.loaded = loaded
        self.state = "ready"

    @property
    def can_chat(self) -> bool:
        return self.loaded is not None and bool(getattr(self.loaded.tokenizer, "chat_template", None))

    def card(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "gpt2tui"}


def _stop_texts(model_stops: Any, request_stops: tuple[str, ...]) -> tuple[str, ...]:
    """The model's own end-of-turn texts (as ``gpt2tui generate`` uses them) and the request's ``stop``."""
    own = (model_stops,) if isinstance(model_stops, str) else tuple(model_stops or ())
    return tuple(dict.fromkeys(s for s in (*own, *request_stops) if s))


# ---------------------------------------------------------------------------------------------- jobs


@dataclass
class Draft:
    """One choice to generate: the exact text given to the model and its settings (with its own seed)."""

    index: int
    prompt: str
    settings: GenerationSettings
    max_new: int  # the new tokens this prompt leaves room for (a reply this long ended by "length")
    echo: str = ""


@dataclass
class Text:
    index: int
    text: str


@dataclass
class Finished:
    index: int
    reply: Reply
    finish_reason: str


@dataclass
class Failed:
    error: BaseException


class Done:
    """The job has ended (every choice finished, or it was stopped)."""


class Job:
    """One request's generations, run in its model's worker thread; events come back to the event loop."""

    def __init__(
        self, kind: str, model: ServedModel, drafts: list[Draft], stops: tuple[str, ...], jobs: set[Job]
    ) -> None:
        self.id = f"{kind}-{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model
        self.drafts = drafts
        self.stops = stops
        self.cancel = threading.Event()
        self.reason: str | None = None  # why it was stopped: CLIENT_LEFT or SHUTTING_DOWN
        self.finished = False
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.jobs = jobs  # the requests in flight (a shutdown stops them); this job leaves it when it ends

    def _end(self) -> None:
        """On the event loop, in one step: the job has ended (so :meth:`stop` is a no-op), and says so."""
        self.finished = True
        self.jobs.discard(self)
        self.events.put_nowait(Done())

    def stop(self, reason: str) -> None:
        """Ask the generation to end at its next token (a no-op once the job has ended)."""
        if not self.finished and self.reason is None:
            self.reason = reason
            self.cancel.set()

    def post(self, event: Any) -> None:
        """From the worker thread: hand an event to the request's coroutine (dropped once the loop is gone)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def run(self) -> None:
        """Generate every choice in turn (in the model's worker thread)."""
        from gpt2tui.core.generation import stream

        loaded = self.model.loaded
        assert loaded is not None
        started = time.perf_counter()
        replies: list[Reply] = []
        try:
            for draft in self.drafts:
                if self.cancel.is_set():
                    break
                reply_stream = stream(
                    loaded.model,
                    loaded.tokenizer,
                    draft.prompt,
                    draft.settings,
                    self.cancel,
                    stop_text=self.stops,
                    prompt_cache=loaded.prompt_cache,
                )
                for chunk in reply_stream:
                    if chunk:  # a reply's last chunk may bring only tokens (end-of-text), no text
                        self.post(Text(draft.index, chunk))
                reply = reply_stream.reply
                replies.append(reply)
                self.post(
                    Finished(draft.index, reply, finish_reason(reply, draft, loaded.tokenizer, self.stops))
                )
        except Exception as err:
            log.exception("%s %s: generation failed", self.id, self.model.name)
            self.post(Failed(err))
        finally:
            cut = self.cancel.is_set()  # read before the loop hears of the end: later stops are no-ops
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._end)
            self._log(replies, time.perf_counter() - started, cut)

    def _log(self, replies: list[Reply], seconds: float, cut: bool) -> None:
        new = sum(r.new_tokens for r in replies)
        prompt = sum(r.prompt_tokens for r in replies)
        cached = sum(r.cached_tokens for r in replies)
        rate = new / seconds if seconds > 0 else 0.0
        line = (
            f"{self.id} {self.model.name}: {len(replies)}/{len(self.drafts)} choices, {prompt} prompt "
            f"({cached} cached) + {new} new tokens in {seconds:.2f} s ({rate:,.0f} tok/s)"
        )
        if cut:
            asked = sum(d.max_new for d in self.drafts)
            line += f"; stopped ({self.reason}) after {new} of up to {asked} new tokens"
        log.info(line)


def finish_reason(reply: Reply, draft: Draft, tokenizer: Any, stops: tuple[str, ...]) -> str:
    """``stop`` (end-of-text or a stop text) or ``length`` (the reply used all the room it had)."""
    ids = [token for token, _ in reply.tokens]
    if ids and ids[-1] == tokenizer.eos_token_id:
        return "stop"
    if reply.new_tokens < draft.max_new:
        return "stop"
    if stops and ids and len(tokenizer.decode(ids, skip_special_tokens=True)) > len(reply.text):
        return "stop"  # a stop text ended on the last token the reply had room for
    return "length"


# ------------------------------------------------------------------------------------------ logprobs


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each printable stand-in character to the byte it encodes."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(visible, chars, strict=True)}


BYTE_DECODER = _byte_decoder()


def token_entries(tokenizer: Any, reply: Reply) -> list[tuple[str, float, bytes]]:
    """(text, log-probability, bytes) of each generated token that is part of the reply's text (a stop text
    and end-of-text are not)."""
    entries = []
    offset = 0
    for token, logprob in reply.tokens:
        if offset >= len(reply.text):
            break
        text = tokenizer.decode([token], skip_special_tokens=True)
        piece = tokenizer.convert_ids_to_tokens(token)
        raw = (
            bytes(BYTE_DECODER[c] for c in piece)
            if isinstance(piece, str) and all(c in BYTE_DECODER for c in piece)
            else text.encode("utf-8")
        )
        entries.append((text, logprob, raw))
        offset += len(text)
    return entries


def completion_logprobs(tokenizer: Any, reply: Reply) -> dict[str, Any]:
    entries = token_entries(tokenizer, reply)
    offsets, at = [], 0
    for text, _, _ in entries:
        offsets.append(at)
        at += len(text)
    return {
        "tokens": [text for text, _, _ in entries],
        "token_logprobs": [logprob for _, logprob, _ in entries],
        "top_logprobs": None,  # only the chosen tokens' log-probabilities are recorded
        "text_offset": offsets,
    }


def chat_logprobs(tokenizer: Any, reply: Reply) -> dict[str, Any]:
    return {
        "content": [
            {"token": text, "logprob": logprob, "bytes": list(raw), "top_logprobs": []}
            for text, logprob, raw in token_entries(tokenizer, reply)
        ],
        "refusal": None,
    }


# --------------------------------------------------------------------------------------------- prompts


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _room(context: int, prompt_tokens: int, max_tokens: int, explicit: int | None, field_name: str) -> int:
    """New tokens a prompt of ``prompt_tokens`` leaves room for, after the one context rule trims it; a
    ``max_tokens`` the client asked for that cannot fit is refused."""
    if explicit is not None and explicit >= context:
        raise bad(
            f"{field_name} must be less than the model's context of {context} tokens, not {explicit}.",
            field_name,
        )
    kept = max(1, min(prompt_tokens, prompt_budget(context, max_tokens)))
    if explicit is not None and kept + explicit > context:
        raise bad(
            f"{field_name} {explicit} does not fit: the model's context is {context} tokens and this prompt keeps "
            f"{kept} of them (up to half the context is kept for the prompt), so ask for at most "
            f"{context - kept}.",
            field_name,
        )
    return max(1, min(max_tokens, context - kept))


def plan_completion(
    model: ServedModel,
    prompts: list[str],
    settings: GenerationSettings,
    explicit: int | None,
    n: int,
    seed: int,
    echo: bool,
) -> list[Draft]:
    """The drafts of a completions request (choice ``p * n + j`` is prompt ``p`` with seed ``seed + j``)."""
    assert model.loaded is not None
    context = model.loaded.context_length
    drafts = []
    with model.planner_lock:
        for p, prompt in enumerate(prompts):
            room = _room(
                context, _count(model.planner, prompt), settings.max_new_tokens, explicit, "max_tokens"
            )
            for j in range(n):
                own = validated(settings.replace(seed=seed + j))
                drafts.append(Draft(p * n + j, prompt, own, room, prompt if echo else ""))
    return drafts


def _message_text(message: Any, index: int) -> dict[str, str]:
    """A message as the chat template takes it: a role and a string (text parts are joined)."""
    where = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise bad(f"{where} must be an object with a role and a content.", "messages")
    role, content = message["role"], message.get("content")
    if role == "developer":
        role = "system"
    if content is None and role != "assistant":  # OpenAI's rule: only an assistant turn may have none
        raise bad(f"{where}.content is required in a {role} message.", "messages")
    if content is None:
        content = ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad(
                    f"{where} has a content part that is not text; gpt2tui models read text only.", "messages"
                )
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise bad(f"{where}.content must be a string or a list of text parts.", "messages")
    return {"role": role, "content": content}


def chat_text(tokenizer: Any, messages: list[dict[str, str]], budget: int) -> str:
    """The conversation written with the model's chat template, oldest turns dropped until it fits ``budget``
    tokens, as the chat screen does (system messages are kept; the last user turn always is, and what of it
    still does not fit loses its oldest tokens in the core)."""
    from jinja2 import TemplateError

    def render(start: int) -> str:
        kept = [m for m in messages[:start] if m["role"] in SYSTEM_ROLES] + messages[start:]
        try:
            return str(tokenizer.apply_chat_template(kept, add_generation_prompt=True, tokenize=False))
        except TemplateError as err:
            raise bad(_sentence(err), "messages") from None

    text = render(0)
    if _count(tokenizer, text) <= budget:
        return text
    starts = [i for i, m in enumerate(messages) if m["role"] == "user" and i > 0]
    if not starts:
        return text
    low, high = 0, len(starts) - 1  # the earliest start that fits; the last one when none does
    while low < high:
        middle = (low + high) // 2
        if _count(tokenizer, render(starts[middle])) <= budget:
            high = middle
        else:
            low = middle + 1
    return render(starts[low])


def plan_chat(
    model: ServedModel,
    messages: list[dict[str, str]],
    settings: GenerationSettings,
    explicit: int | None,
    field_name: str,
    n: int,
    seed: int,
) -> list[Draft]:
    assert model.loaded is not None
    context = model.loaded.context_length
    with model.planner_lock:
        text = chat_text(model.planner, messages, prompt_budget(context, settings.max_new_tokens))
        room = _room(context, _count(model.planner, text), settings.max_new_tokens, explicit, field_name)
    return [Draft(j, text, validated(settings.replace(seed=seed + j)), room) for j in range(n)]


# ----------------------------------------------------------------------------------------- the server


class ServerState:
    """The served models, the API key, and the requests in flight (so a shutdown can stop them)."""

    def __init__(
        self, models: Sequence[ServedModel], api_key: str | None = None, prompt_caches: int = SERVE_CACHES
    ) -> None:
        self.models = {m.name: m for m in models}
        self.api_key = api_key
        self.prompt_caches = prompt_caches  # kept key/value caches per model (core.prompt_cache)
        self.jobs: set[Job] = set()
        self.closing = False
        self.fatal: str | None = None  # a model that could not be loaded: the server ends with this sentence

    def close(self) -> None:
        """Stop taking requests and end every generation at its next token (queued ones never start)."""
        self.closing = True
        for job in list(self.jobs):
            job.stop(SHUTTING_DOWN)

    def shutdown_workers(self) -> None:
        for model in self.models.values():
            if model.executor is not None:
                model.executor.shutdown(wait=False, cancel_futures=True)

    def authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), self.api_key.encode("utf-8", "surrogateescape")
        ):
            # The token is never repeated: it may be someone's real key for another service.
            raise ApiError(
                401,
                "Incorrect or missing API key: send the server's key as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
            )

    def model(self, name: Any) -> ServedModel:
        if not isinstance(name, str) or not name:
            raise bad("model is required: one of the served models (GET /v1/models lists them).", "model")
        model = self.models.get(name)
        if model is None:
            served = ", ".join(self.models)
            raise ApiError(
                404,
                f"The model '{name}' is not served here; this server serves: {served}.",
                "model",
                "model_not_found",
            )
        if model.state != "ready":
            raise ApiError(
                503, f"The model '{name}' is still loading; try again in a moment.", "model", "model_loading"
            )
        return model

    def check_open(self) -> None:
        if self.closing:
            raise ApiError(503, "The server is shutting down.", code="shutting_down")


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, refused with 413 past :data:`MAX_BODY_BYTES` (before reading it, when
    Content-Length says so)."""
    too_large = ApiError(
        413,
        f"The request body is larger than the server's limit of {MAX_BODY_BYTES:,} bytes.",
        code="too_large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad(f"The request body is not valid JSON ({err}).") from None
    except RecursionError:
        raise bad("The request body is not valid JSON (nested too deeply).") from None
    if not isinstance(data, dict):
        raise bad("The request body must be a JSON object.")
    return without_lone_surrogates(data)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """Every string in ``value`` with its lone UTF-16 surrogates as U+FFFD.

    ``"\\ud800"`` is valid JSON (a JavaScript string cut inside an emoji sends one), but no UTF-8 text holds it:
    the tokenizer raised a TypeError and the client got a 500. A surrogate pair has already become one
    character here, so any surrogate left is alone.
    """
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    return value


async def wait_disconnect(request: Request) -> None:
    """Return when the client goes away (the body has been read: the next ASGI message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


class EventStream(StreamingResponse):
    """Server-sent events for one job; when the response ends before the job (the client went away, seen by
    starlette's disconnect listener), the job is stopped at its next token."""

    def __init__(self, content: AsyncIterator[str], job: Job) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.stop(CLIENT_LEFT)  # a no-op when the job has ended


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def usage(finished: dict[int, Finished], n: int) -> dict[str, Any]:
    """OpenAI's usage object for the finished choices (``n`` per prompt): every choice's new tokens; prompt
    tokens counted once per prompt, however many choices it has (as OpenAI counts them), and of those the ones
    an earlier generation had computed (``core.prompt_cache``)."""
    firsts = [f.reply for index, f in finished.items() if index % n == 0]
    prompt_tokens = sum(reply.prompt_tokens for reply in firsts)
    completion_tokens = sum(f.reply.new_tokens for f in finished.values())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": sum(reply.cached_tokens for reply in firsts)},
    }


def build_app(state: ServerState) -> Starlette:
    """The ASGI application over ``state`` (the CLI runs it with uvicorn; tests may too, in-process)."""

    def endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                return err.response()
            except ClientDisconnect:  # gone before its request was read: nothing was started
                return Response(status_code=499)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return ApiError(500, "The server failed on this request; its log says why.").response()

        return wrapped

    async def start(job: Job) -> None:
        state.check_open()
        assert job.model.executor is not None
        ahead = sum(1 for other in state.jobs if other.model is job.model)
        choices = len(job.drafts)
        log.info(
            "%s %s: queued %d choice%s of up to %d new tokens (%d request%s ahead)",
            job.id,
            job.model.name,
            choices,
            "" if choices == 1 else "s",
            max(d.max_new for d in job.drafts),
            ahead,
            "" if ahead == 1 else "s",
        )
        state.jobs.add(job)
        try:
            job.model.executor.submit(job.run)
        except RuntimeError:  # the workers are shut down
            state.jobs.discard(job)
            raise ApiError(503, "The server is shutting down.", code="shutting_down") from None

    async def next_event(job: Job) -> Any:
        return await job.events.get()

    async def merged_events(job: Job) -> AsyncIterator[Any]:
        """The job's events up to :class:`Done`, text already waiting merged into one event per choice: when
        the event loop falls behind the model (it shares the GIL with generation), fewer, larger chunks are
        encoded and written, instead of the backlog costing one JSON chunk per token."""
        while True:
            batch = [await job.events.get()]
            while not job.events.empty():
                batch.append(job.events.get_nowait())
            merged: list[Any] = []
            for event in batch:
                last = merged[-1] if merged else None
                if isinstance(event, Text) and isinstance(last, Text) and last.index == event.index:
                    merged[-1] = Text(event.index, last.text + event.text)
                else:
                    merged.append(event)
            for event in merged:
                yield event
                if isinstance(event, Done):
                    return

    async def collect(job: Job, request: Request) -> dict[int, Finished] | None:
        """Wait for the whole job; None when the client left first (its generation is stopped)."""
        watcher = asyncio.ensure_future(wait_disconnect(request))

        def left(_: Any) -> None:
            job.stop(CLIENT_LEFT)
            job.events.put_nowait(None)

        watcher.add_done_callback(lambda task: None if task.cancelled() else left(task))
        finished: dict[int, Finished] = {}
        try:
            while True:
                event = await next_event(job)
                if event is None:
                    return None
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Finished):
                    finished[event.index] = event
                if isinstance(event, Done):
                    break
        finally:
            watcher.cancel()
        if job.reason == SHUTTING_DOWN:
            raise ApiError(
                503, "The server is shutting down; the reply was not finished.", code="shutting_down"
            )
        return finished

    def stream_error(job: Job, error: BaseException | None) -> str:
        if error is None:
            body = ApiError(
                503, "The server is shutting down; the reply was cut short.", code="shutting_down"
            )
        else:
            body = ApiError(500, f"Generation failed: {_sentence(error)}")
        return sse(body.body())

    async def models(request: Request) -> Response:
        state.authorize(request)
        return JSONResponse({"object": "list", "data": [m.card() for m in state.models.values()]})

    async def one_model(request: Request) -> Response:
        state.authorize(request)
        name = request.path_params["name"]
        if name not in state.models:
            raise ApiError(404, f"The model '{name}' is not served here.", "model", "model_not_found")
        return JSONResponse(state.models[name].card())

    async def health(request: Request) -> Response:
        loading = any(m.state != "ready" for m in state.models.values())
        status = "shutting down" if state.closing else "loading" if loading else "ok"
        return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)

    async def completions(request: Request) -> Response:
        state.authorize(request)
        state.check_open()
        fields = Fields(await read_json(request))
        model = state.model(fields.get("model"))
        prompt = fields.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise bad(
                "prompt must be a string or a non-empty list of strings (token arrays are not supported).",
                "prompt",
            )
        settings, explicit, n = _settings(fields, "max_tokens")
        if len(prompts) * n > MAX_CHOICES:
            raise bad(
                f"A request may ask for at most {MAX_CHOICES} choices (prompts times n), not {len(prompts) * n}.",
                "n",
            )
        fields.unsupported(
            "best_of", "every choice here is returned (leave best_of out or equal to n).", lambda v: v == n
        )
        fields.unsupported("suffix", "GPT-2 only continues text.", lambda v: v == "")
        stream = fields.boolean("stream")
        echo = fields.boolean("echo")
        want_logprobs = fields.integer("logprobs")
        if want_logprobs is not None:
            if not 0 <= want_logprobs <= 5:
                raise bad(f"logprobs must be from 0 to 5, not {want_logprobs}.", "logprobs")
            if stream:
                raise bad("logprobs are not available when streaming; ask without stream.", "logprobs")
            if echo:
                raise bad(
                    "logprobs cannot be combined with echo: gpt2tui does not score the prompt.", "logprobs"
                )
            if settings.strategy == "beam":
                raise bad("logprobs are not available with beam search (num_beams above 1).", "logprobs")
        assert model.loaded is not None
        stops = _stop_texts(model.loaded.stop_text, fields.stop_texts())
        seed = _seed(fields)
        drafts = await run_in_thread(plan_completion, model, prompts, settings, explicit, n, seed, echo)
        job = Job("cmpl", model, drafts, stops, state.jobs)
        await start(job)
        head = {"id": job.id, "object": "text_completion", "created": job.created, "model": model.name}
        if stream:
            include_usage = _include_usage(fields)

            async def events() -> AsyncIterator[str]:
                extra = {"usage": None} if include_usage else {}
                for draft in drafts if echo else ():
                    choice = {
                        "index": draft.index,
                        "text": draft.echo,
                        "logprobs": None,
                        "finish_reason": None,
                    }
                    yield sse({**head, "choices": [choice], **extra})
                finished: dict[int, Finished] = {}
                async for event in merged_events(job):
                    if isinstance(event, Text):
                        choice = {
                            "index": event.index,
                            "text": event.text,
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        yield sse({**head, "choices": [choice], **extra})
                    elif isinstance(event, Finished):
                        finished[event.index] = event
                        choice = {
                            "index": event.index,
                            "text": "",
                            "logprobs": None,
                            "finish_reason": event.finish_reason,
                        }
                        yield sse({**head, "choices": [choice], **extra})
                    elif isinstance(event, Failed):
                        yield stream_error(job, event.error)
                        return
                    elif isinstance(event, Done):
                        break
                if job.reason == SHUTTING_DOWN:
                    yield stream_error(job, None)
                    return
                if include_usage:
                    yield sse({**head, "choices": [], "usage": usage(finished, n)})
                yield sse("[DONE]")

            return EventStream(events(), job)
        finished = await collect(job, request)
        if finished is None:
            return Response(status_code=499)
        tokenizer = model.loaded.tokenizer
        choices = []
        for draft in drafts:
            done = finished[draft.index]
            choices.append(
                {
                    "index": draft.index,
                    "text": draft.echo + done.reply.text,
                    "logprobs": completion_logprobs(tokenizer, done.reply)
                    if want_logprobs is not None
                    else None,
                    "finish_reason": done.finish_reason,
                    "seed": done.reply.seed,
                }
            )
        return JSONResponse(
            {
                **head,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                "usage": usage(finished, n),
            }
        )

    async def chat(request: Request) -> Response:
        state.authorize(request)
        state.check_open()
        fields = Fields(await read_json(request))
        model = state.model(fields.get("model"))
        raw = fields.get("messages")
        if not isinstance(raw, list) or not raw:
            raise bad("messages must be a non-empty list of {role, content} objects.", "messages")
        messages = [_message_text(m, i) for i, m in enumerate(raw)]
        if not model.can_chat:
            raise bad(
                f"The model '{model.name}' has no chat template (it was trained on plain text), so it cannot "
                "hold a conversation; send the text to /v1/completions instead.",
                "model",
            )
        length_field = (
            "max_completion_tokens" if fields.get("max_completion_tokens") is not None else "max_tokens"
        )
        settings, explicit, n = _settings(fields, length_field)
        fields.unsupported("tools", "gpt2tui models cannot call tools.", lambda v: v == [])
        fields.unsupported("functions", "gpt2tui models cannot call functions.", lambda v: v == [])
        fields.unsupported(
            "response_format",
            "gpt2tui models write plain text only.",
            lambda v: isinstance(v, dict) and v.get("type") == "text",
        )
        stream = fields.boolean("stream")
        want_logprobs = fields.boolean("logprobs")
        top = fields.integer("top_logprobs")
        if want_logprobs or top:
            if top and not want_logprobs:
                raise bad("top_logprobs needs logprobs set to true.", "top_logprobs")
            if stream:
                raise bad("logprobs are not available when streaming; ask without stream.", "logprobs")
            if settings.strategy == "beam":
                raise bad("logprobs are not available with beam search (num_beams above 1).", "logprobs")
        assert model.loaded is not None
        stops = _stop_texts(model.loaded.stop_text, fields.stop_texts())
        seed = _seed(fields)
        drafts = await run_in_thread(plan_chat, model, messages, settings, explicit, length_field, n, seed)
        job = Job("chatcmpl", model, drafts, stops, state.jobs)
        await start(job)
        head = {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": model.name}
        if stream:
            include_usage = _include_usage(fields)

            async def events() -> AsyncIterator[str]:
                extra = {"usage": None} if include_usage else {}
                opened: set[int] = set()
                finished: dict[int, Finished] = {}

                def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> str:
                    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
                    return sse({**head, "system_fingerprint": FINGERPRINT, "choices": [choice], **extra})

                async for event in merged_events(job):
                    index = getattr(event, "index", None)
                    if index is not None and index not in opened:
                        opened.add(index)
                        yield chunk(index, {"role": "assistant", "content": ""})
                    if isinstance(event, Text):
                        yield chunk(event.index, {"content": event.text})
                    elif isinstance(event, Finished):
                        finished[event.index] = event
                        yield chunk(event.index, {}, event.finish_reason)
                    elif isinstance(event, Failed):
                        yield stream_error(job, event.error)
                        return
                    elif isinstance(event, Done):
                        break
                if job.reason == SHUTTING_DOWN:
                    yield stream_error(job, None)
                    return
                if include_usage:
                    yield sse({**head, "choices": [], "usage": usage(finished, n)})
                yield sse("[DONE]")

            return EventStream(events(), job)
        finished = await collect(job, request)
        if finished is None:
            return Response(status_code=499)
        tokenizer = model.loaded.tokenizer
        choices = [
            {
                "index": j,
                "message": {"role": "assistant", "content": finished[j].reply.text},
                "logprobs": chat_logprobs(tokenizer, finished[j].reply) if want_logprobs else None,
                "finish_reason": finished[j].finish_reason,
                "seed": finished[j].reply.seed,
            }
            for j in range(n)
        ]
        return JSONResponse(
            {
                **head,
                "object": "chat.completion",
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                "usage": usage(finished, n),
            }
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return ApiError(
                404, f"There is no {request.url.path} here; the API is under /v1.", code="not_found"
            ).response()
        if exc.status_code == 405:
            return ApiError(405, f"{request.method} is not allowed on {request.url.path}.").response()
        return ApiError(exc.status_code, _sentence(exc.detail)).response()

    routes = [
        Route("/health", endpoint(health), methods=["GET"]),
        Route("/v1/models", endpoint(models), methods=["GET"]),
        Route("/v1/models/{name:path}", endpoint(one_model), methods=["GET"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/chat/completions", endpoint(chat), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def _include_usage(fields: Fields) -> bool:
    options = fields.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise bad('stream_options must be an object such as {"include_usage": true}.', "stream_options")
    value = options.get("include_usage", False)
    if not isinstance(value, bool):
        raise bad("stream_options.include_usage must be true or false.", "stream_options")
    return value


# -------------------------------------------------------------------------------------- running it


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server reachable from other machines with no API key (None when there is none)."""
    if api_key:
        return None
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"warning: listening on {host} with no API key: anyone who can reach this port can use the models; "
        f"set --api-key (or {API_KEY_ENV}), or keep the default {DEFAULT_HOST} and use an SSH tunnel."
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one sentence on why it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UserError(f"--host {host} is not an address of this machine.") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise UserError(f"Port {port} on {host} is in use; choose another with --port.") from None
        raise UserError(f"Cannot listen on {host}:{port}: {(err.strerror or str(err)).lower()}.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class WithoutQuery(logging.Filter):
    """Access log lines name the path without its query string: a client may put its API key there
    (``?api_key=…``), and the key must never reach a log. The query's presence is kept (``?…``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(message)s", "datefmt": "%H:%M:%S"}},
    "filters": {"without_query": {"()": WithoutQuery}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {
            "handlers": ["stderr"],
            "filters": ["without_query"],
            "level": "INFO",
            "propagate": False,
        },
        "gpt2tui.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def _loader(state: ServerState, on_fatal: Callable[[], None], out: TextIO) -> None:
    """Load the models one after another (requests for one still loading get a 503)."""
    from gpt2tui.core.generation import load_resolved

    for model in state.models.values():
        started = time.perf_counter()
        try:
            loaded = load_resolved(model.info)
        except Exception as err:
            state.fatal = (
                str(err) if isinstance(err, UserError) else f"Could not load {model.name}: {_sentence(err)}"
            )
            model.state = "failed"
            on_fatal()
            return
        if state.closing:
            return
        loaded.prompt_cache = PromptCache(state.prompt_caches)
        model.ready(loaded)
        what = "chat and completions" if model.can_chat else "completions only: no chat template"
        print(
            f"{model.name}: ready in {time.perf_counter() - started:.1f} s "
            f"(context {loaded.context_length} tokens; {what})",
            file=out,
            flush=True,
        )


def run_server(
    refs: Sequence[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    threads: int | None = None,
    out: TextIO = sys.stdout,
    prompt_caches: int = SERVE_CACHES,
) -> int:
    """``gpt2tui serve``: resolve the models, listen, load them in the background, serve until a signal."""
    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.generation import resolve

    if api_key is not None and not api_key.strip():
        raise UserError("--api-key must not be empty (leave it out to serve without a key).")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, not {port}.")
    if prompt_caches < 0:
        raise UserError(f"--prompt-caches must be 0 or more, not {prompt_caches}.")
    warning = exposure_warning(host, api_key)
    if warning:
        print(f"gpt2tui: {warning}", file=sys.stderr, flush=True)
    infos = [resolve(ref) for ref in refs]  # every name checked before anything listens or loads
    served: dict[str, ServedModel] = {}
    for info in infos:
        if info.name in served:
            raise UserError(f"The model '{info.name}' is named twice; serve each model once.")
        created = info.metadata.created_at
        served[info.name] = ServedModel(
            info.name, info, **({"created": int(created.timestamp())} if created else {})
        )
    configure_threads(threads)  # before torch is imported (by the loader): OpenMP reads it once
    sock = bind(host, port)
    state = ServerState(list(served.values()), api_key, prompt_caches)
    config = uvicorn.Config(
        build_app(state),
        log_config=LOG_CONFIG,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        lifespan="off",
    )
    server = GracefulServer(config, state)
    shown = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    print(
        f"Serving {', '.join(served)} at http://{where}:{shown}/v1 (OpenAI API; "
        f"{'API key required' if api_key else 'no API key'}); Ctrl+C stops.",
        file=out,
        flush=True,
    )

    def fail() -> None:
        server.should_exit = True

    threading.Thread(target=_loader, args=(state, fail, out), daemon=True, name="gpt2tui-serve-load").start()
    try:
        server.run(sockets=[sock])
    finally:
        state.close()
        state.shutdown_workers()
        sock.close()
    if state.fatal:
        raise UserError(state.fatal)
    print("Stopped.", file=out, flush=True)
    return 0


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but a signal first stops every generation, and the process then exits normally
    (uvicorn re-raises the signal after shutting down, which would end the CLI with 130 or -15)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            name = signal.Signals(sig).name
            print(f"gpt2tui: {name}: stopping (replies in progress end now).", file=sys.stderr, flush=True)
        self.state.close()
        super().handle_exit(sig, frame)
