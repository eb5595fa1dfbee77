"""``gpt2tui serve`` end to end: real server processes on free loopback ports, the official ``openai`` client
and raw HTTP.

Two server processes start together (their torch imports overlap): the main one, with an API key, serves
``tiny`` (trained on Q/A rows: it has a chat template) and ``long`` (an untrained scratch model with a 1,024
token context and no chat template: replies long enough to be interrupted, and a plain-text model for the
chat refusal); the spare one serves ``long`` and is stopped with SIGTERM. Every process is stopped by its
fixture, whatever the tests did. Nothing here measures time: waits have generous limits and fail with the
server's log.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from gpt2tui.core.data import QA_PROMPT_TEMPLATE
from tests.conftest import CLOSED_ENDPOINT, KJV_TXT, gpt2tui_command

API_KEY = "sk-test-7f3c9e1d2b"
WRONG_KEY = "sk-wrong-a1b2c3"
START_SECONDS = 180  # a busy 2-core machine can take a while to import torch in two processes at once
LOG_SECONDS = 60
QUESTION = "What is the largest planet?"
SAMPLING = {"temperature": 0.8, "top_p": 0.95, "seed": 7, "max_tokens": 40}
CLI_SAMPLING = ["--strategy", "top-p", "--temperature", "0.8", "--top-p", "0.95", "--seed", "7"]


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class ServerProcess:
    """A ``gpt2tui serve`` process with its output in files (read at any time, no pipe to fill up)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int = 0

    @classmethod
    def start(cls, folder: Path, env: dict[str, str], *args: str) -> ServerProcess:
        folder.mkdir(parents=True, exist_ok=True)
        out, err = folder / "stdout.txt", folder / "stderr.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                gpt2tui_command("serve", *args, "--port", "0", "--threads", "1"),
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
        return cls(proc, out, err)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_for(self, pattern: str, where: str = "err", seconds: float = LOG_SECONDS) -> re.Match[str]:
        """The first match of ``pattern`` in the server's stdout or stderr, waiting for it to appear."""
        deadline = time.monotonic() + seconds
        while True:
            text = (self.out if where == "out" else self.err).read_text()
            found = re.search(pattern, text)
            if found:
                return found
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"{pattern!r} not seen; server output:\n{self.output()}")
            time.sleep(0.05)

    def wait_ready(self, models: int) -> ServerProcess:
        self.port = int(self.wait_for(r"at http://127\.0\.0\.1:(\d+)/v1", "out", START_SECONDS).group(1))
        self.wait_for(rf"(?s)(: ready in .*){{{models}}}", "out", START_SECONDS)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def build_long_model(folder: Path) -> None:
    """An untrained tiny GPT-2 with a 1,024-token context and a tokenizer without a chat template."""
    from gpt2tui.core.models import build_scratch

    model, tokenizer = build_scratch(KJV_TXT.read_text().split("\n\n"), "tiny", 0, n_positions=1024)
    assert not getattr(tokenizer, "chat_template", None)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="module")
def serve_home(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-home")
    shutil.copytree(trained_tiny, root / "models" / "tiny")
    build_long_model(root / "models" / "long")
    return root


def server_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "GPT2TUI_HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": CLOSED_ENDPOINT,
    }
    env.pop("GPT2TUI_API_KEY", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def servers(serve_home: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    main = ServerProcess.start(
        serve_home / "main", server_env(serve_home, GPT2TUI_API_KEY=API_KEY), "tiny", "long"
    )
    spare = ServerProcess.start(serve_home / "spare", server_env(serve_home), "long")
    try:
        yield main.wait_ready(2), spare.wait_ready(1)
    finally:
        main.stop()
        spare.stop()


@pytest.fixture
def server(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


@pytest.fixture
def spare(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[1]


def client(server: ServerProcess, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key, max_retries=0, timeout=120
    )


def request(
    server: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = API_KEY,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP request: status, headers (lower-case names) and the whole body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_of(body: bytes) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def events_of(body: bytes) -> list[str]:
    """The data of each server-sent event, in order (every event is one ``data:`` line and a blank line)."""
    text = body.decode()
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert all(block.startswith("data: ") and "\n" not in block for block in blocks), text[:500]
    return [block[len("data: ") :] for block in blocks]


def reference(serve_home: Path, *args: str) -> dict[str, Any]:
    run = subprocess.run(
        gpt2tui_command("generate", "tiny", QUESTION, *args, "--json"),
        capture_output=True,
        text=True,
        timeout=240,
        env=server_env(serve_home),
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# ------------------------------------------------------------------------------- the openai client


def test_models_and_health(server: ServerProcess) -> None:
    assert [m.id for m in client(server).models.list().data] == ["tiny", "long"]
    assert client(server).models.retrieve("long").id == "long"
    status, _, body = request(server, "GET", "/health", key=None)  # no key needed to ask if it is up
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def counts(usage: Any) -> tuple[int, int, int]:
    """A usage object's token counts, without the prompt tokens' details (how many were cached)."""
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def test_same_text_as_gpt2tui_generate(server: ServerProcess, serve_home: Path) -> None:
    """Completions (the prompt as the model's template writes it) and chat (the question as a user message),
    streaming and not: the same text as ``gpt2tui generate`` with the same seed and settings."""
    expected = reference(serve_home, *CLI_SAMPLING, "--max-new-tokens", "40")
    assert expected["text"].strip()
    api = client(server)
    prompt = QA_PROMPT_TEMPLATE.format(prompt=QUESTION)
    messages = [{"role": "user", "content": QUESTION}]

    completion = api.completions.create(model="tiny", prompt=prompt, **SAMPLING)
    assert completion.choices[0].text == expected["text"]
    assert completion.object == "text_completion" and completion.model == "tiny"
    assert completion.usage.completion_tokens == expected["new_tokens"]
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + expected["new_tokens"]

    chat = api.chat.completions.create(model="tiny", messages=messages, **SAMPLING)
    assert chat.choices[0].message.content == expected["text"]
    assert chat.choices[0].message.role == "assistant" and chat.object == "chat.completion"
    assert counts(chat.usage) == counts(completion.usage)
    # The same prompt as the completion's: its keys and values were kept, all but its last token's.
    assert chat.usage.prompt_tokens_details.cached_tokens == chat.usage.prompt_tokens - 1

    chunks = list(api.completions.create(model="tiny", prompt=prompt, stream=True, **SAMPLING))
    assert "".join(c.choices[0].text for c in chunks) == expected["text"]
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    chunks = list(
        api.chat.completions.create(
            model="tiny", messages=messages, stream=True, stream_options={"include_usage": True}, **SAMPLING
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected["text"]
    assert chunks[-1].choices == [] and counts(chunks[-1].usage) == counts(completion.usage)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_n_choices_logprobs_echo_and_stop(server: ServerProcess) -> None:
    api = client(server)
    one = api.completions.create(model="tiny", prompt="Question: Mars?\nAnswer:", **SAMPLING)
    several = api.completions.create(
        model="tiny", prompt=["Question: Mars?\nAnswer:", "Venus"], n=2, logprobs=0, **SAMPLING
    )
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert [c.model_extra["seed"] for c in several.choices] == [7, 8, 7, 8]  # seed, seed + 1 per prompt
    assert several.choices[0].text == one.choices[0].text
    for choice in several.choices:
        logprobs = choice.logprobs
        assert "".join(logprobs.tokens) == choice.text
        assert len(logprobs.token_logprobs) == len(logprobs.tokens)
        assert all(lp <= 0 for lp in logprobs.token_logprobs)
        assert logprobs.text_offset[0] == 0
    venus = api.completions.create(model="tiny", prompt="Venus", max_tokens=1)
    assert (
        several.usage.prompt_tokens == one.usage.prompt_tokens + venus.usage.prompt_tokens
    )  # once per prompt

    echoed = api.completions.create(model="tiny", prompt="Question: Mars?\nAnswer:", echo=True, **SAMPLING)
    assert echoed.choices[0].text == "Question: Mars?\nAnswer:" + one.choices[0].text

    text = one.choices[0].text
    cut = text[len(text) // 2 :].strip()[:3]  # a stop text from the middle of the reply
    assert cut
    stopped = api.completions.create(model="tiny", prompt="Question: Mars?\nAnswer:", stop=[cut], **SAMPLING)
    assert stopped.choices[0].text == text[: text.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"

    chat = api.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Mars?"}], logprobs=True, **SAMPLING
    )
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    assert all(bytes(t.bytes).decode("utf-8", "replace") for t in content)

    greedy = api.completions.create(model="tiny", prompt="Venus", temperature=0, max_tokens=8, seed=1)
    again = api.completions.create(model="tiny", prompt="Venus", temperature=0, max_tokens=8, seed=2)
    assert greedy.choices[0].text == again.choices[0].text  # temperature 0 is greedy: no seed involved


def test_interleaved_conversations_each_compute_only_their_new_messages(server: ServerProcess) -> None:
    """Two clients taking turns, each sending its whole conversation: the server keeps a cache for each."""
    api = client(server)
    conversations = [
        [{"role": "user", "content": "What is the largest planet?"}],
        [{"role": "user", "content": "How far away is the Moon from the Earth?"}],
    ]
    first: list[Any] = []
    for turn in range(2):
        for at, messages in enumerate(conversations):
            chat = api.chat.completions.create(
                model="tiny", messages=messages, **{**SAMPLING, "max_tokens": 8}
            )
            messages += [
                {"role": "assistant", "content": chat.choices[0].message.content},
                {"role": "user", "content": "Tell me more."},
            ]
            if turn == 0:
                first.append(chat.usage)
            else:  # at least the conversation's first request was kept for it
                earlier = first[at]
                assert chat.usage.prompt_tokens_details.cached_tokens >= earlier.prompt_tokens


def test_raw_http_streaming_wire_format(server: ServerProcess) -> None:
    body = {"model": "tiny", "prompt": "Venus", "stream": True, "stream_options": {"include_usage": True}}
    status, headers, raw = request(server, "POST", "/v1/completions", {**body, **SAMPLING})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = events_of(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )
    text_chunks = chunks[:-1]
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in text_chunks)
    assert [c["choices"][0]["finish_reason"] for c in text_chunks][-1] in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None for c in text_chunks[:-1])

    status, headers, raw = request(
        server, "POST", "/v1/completions", {"model": "tiny", "prompt": "Venus", **SAMPLING}
    )
    assert status == 200 and headers["content-type"] == "application/json"
    reply = json.loads(raw)
    assert reply["choices"][0]["text"] == "".join(c["choices"][0]["text"] for c in text_chunks)
    details = {"prompt_tokens_details"}
    assert {k: v for k, v in reply["usage"].items() if k not in details} == {
        k: v for k, v in usage["usage"].items() if k not in details
    }
    # The same prompt again: the model kept the first request's keys and values for all but its last token.
    assert reply["usage"]["prompt_tokens_details"] == {"cached_tokens": reply["usage"]["prompt_tokens"] - 1}

    status, _, raw = request(
        server,
        "POST",
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "Venus"}], "stream": True, **SAMPLING},
    )
    events = events_of(raw)
    assert status == 200 and events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


def test_long_prompts_are_trimmed_as_in_chat(server: ServerProcess) -> None:
    """tiny's context is 256 tokens: with the default 100 new tokens, the prompt keeps its last 156."""
    api = client(server)
    long_prompt = "Question: What is the Sun?\nAnswer: A star.\n" * 60
    reply = api.completions.create(model="tiny", prompt=long_prompt, seed=1)
    assert reply.usage.prompt_tokens == 256 - 100

    turns = []
    for i in range(40):
        turns += [
            {"role": "user", "content": f"What is planet {i}?"},
            {"role": "assistant", "content": "A world."},
        ]
    turns.append({"role": "user", "content": "And the Moon?"})
    chat = api.chat.completions.create(model="tiny", messages=turns, seed=1, max_tokens=50)
    assert 0 < chat.usage.prompt_tokens <= 256 - 50  # the oldest turns were dropped, whole


def test_errors_are_openai_error_objects(server: ServerProcess) -> None:
    api = client(server)
    cases = [
        (
            dict(model="tiny", prompt="x", temperature=-1),
            "temperature must be at least 0, not -1.",
            "temperature",
        ),
        (dict(model="tiny", prompt="x", top_p=2), "top_p must be in (0, 1], not 2.0.", "top_p"),
        (dict(model="tiny", prompt="x", max_tokens=0), "max_tokens must be at least 1, not 0.", "max_tokens"),
        (
            dict(model="tiny", prompt="x", max_tokens=256),
            "max_tokens must be less than the model's context of 256 tokens, not 256.",
            "max_tokens",
        ),
        (
            dict(model="tiny", prompt="word " * 400, max_tokens=200),
            "max_tokens 200 does not fit: the model's context is 256 tokens and this prompt keeps 128 of them "
            "(up to half the context is kept for the prompt), so ask for at most 128.",
            "max_tokens",
        ),
        (
            dict(model="tiny", prompt="x", extra_body={"top_k": 5}, top_p=0.5),
            "top_k and top_p cannot be combined: gpt2tui samples with one of them (leave top_p out, or set it "
            "to 1, to sample with top_k).",
            "top_k",
        ),
        (
            dict(model="tiny", prompt="x", seed=-1),
            f"seed must be a whole number from 0 to {2**63 - 1}, not -1.",
            "seed",
        ),
        (dict(model="tiny", prompt="x", n=17), "n must be from 1 to 16, not 17.", "n"),
    ]
    for kwargs, message, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            api.completions.create(**kwargs)
        assert caught.value.status_code == 400
        assert caught.value.body == {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": None,
        }, kwargs

    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="long", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["message"] == (
        "The model 'long' has no chat template (it was trained on plain text), so it cannot hold a "
        "conversation; send the text to /v1/completions instead."
    )
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="tiny", messages=[{"role": "tool", "content": "42"}])
    assert caught.value.body["message"] == (
        "This model was trained on prompts and replies only; its chat template cannot write a tool message."
    )
    status, _, body = request(
        server, "POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user"}]}
    )
    assert (status, error_of(body)["message"]) == (400, "messages[0].content is required in a user message.")
    with pytest.raises(openai.NotFoundError) as caught:
        api.completions.create(model="gpt-4", prompt="x")
    assert (
        caught.value.body["message"]
        == "The model 'gpt-4' is not served here; this server serves: tiny, long."
    )
    assert caught.value.body["code"] == "model_not_found"

    status, _, body = request(server, "POST", "/v1/completions", raw=b"{not json")
    assert status == 400 and error_of(body)["message"].startswith("The request body is not valid JSON (")
    status, _, body = request(server, "POST", "/v1/completions", {"prompt": "x"})
    assert (status, error_of(body)["message"]) == (
        400,
        "model is required: one of the served models (GET /v1/models lists them).",
    )
    status, _, body = request(
        server, "POST", "/v1/completions", raw=b'{"model": "tiny", "prompt": "' + b"x" * 1_100_000 + b'"}'
    )
    assert status == 413
    assert (
        error_of(body)["message"] == "The request body is larger than the server's limit of 1,048,576 bytes."
    )
    with pytest.raises(openai.APIStatusError) as caught:
        api.completions.create(model="tiny", prompt="x" * 1_100_000)
    assert caught.value.status_code == 413
    status, _, body = request(server, "POST", "/v1/completions", raw=b"[" * 100_000 + b"]" * 100_000)
    assert (status, error_of(body)["message"]) == (
        400,
        "The request body is not valid JSON (nested too deeply).",
    )
    status, _, body = request(
        server, "POST", "/v1/completions", raw=b'{"model": "tiny", "prompt": "x", "temperature": NaN}'
    )
    assert (status, error_of(body)["message"]) == (400, "temperature must be a finite number, not nan.")
    # A JavaScript string cut inside an emoji: a lone surrogate, valid JSON that no UTF-8 text holds.
    lone = b'{"model": "tiny", "prompt": "caf\\ud83d", "max_tokens": 2, "temperature": 0, "echo": true}'
    status, _, body = request(server, "POST", "/v1/completions", raw=lone)
    assert status == 200 and json.loads(body)["choices"][0]["text"].startswith("caf\ufffd")
    status, _, body = request(server, "GET", "/v1/nothing")
    assert (status, error_of(body)["message"]) == (404, "There is no /v1/nothing here; the API is under /v1.")
    status, _, body = request(server, "GET", "/v1/completions")
    assert (status, error_of(body)["message"]) == (405, "GET is not allowed on /v1/completions.")


def test_api_key_is_required_and_never_logged(server: ServerProcess) -> None:
    message = "Incorrect or missing API key: send the server's key as 'Authorization: Bearer KEY'."
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, WRONG_KEY).completions.create(model="tiny", prompt="x", max_tokens=2)
    assert caught.value.status_code == 401 and caught.value.body["message"] == message
    assert caught.value.body["code"] == "invalid_api_key"
    for path, method in (
        ("/v1/models", "GET"),
        ("/v1/completions", "POST"),
        ("/v1/chat/completions", "POST"),
    ):
        status, headers, body = request(server, method, path, {"model": "tiny", "prompt": "x"}, key=None)
        assert (status, error_of(body)["message"], headers["www-authenticate"]) == (401, message, "Bearer")
    status, _, _ = request(server, "GET", f"/v1/models?api_key={WRONG_KEY}", key=None)  # not how to send it
    assert status == 401
    assert client(server).completions.create(model="tiny", prompt="x", max_tokens=2).choices
    output = server.output()
    assert '/v1/completions HTTP/1.1" 401' in output  # the refusals were logged...
    assert '"GET /v1/models?… HTTP/1.1" 401' in output  # (the query string left out)
    assert API_KEY not in output and WRONG_KEY not in output  # ...and no key, right or wrong


def test_eight_concurrent_streams_are_not_mixed(server: ServerProcess) -> None:
    """Eight clients stream at once (queued in the model's worker); each gets exactly its own reply."""
    prompts = [f"Question: What is moon number {i}?\nAnswer:" for i in range(8)]
    barrier = threading.Barrier(8)
    streamed: dict[int, tuple[str, set[str], list[str | None]]] = {}
    failures: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            api = client(server)
            barrier.wait(60)
            chunks = list(
                api.completions.create(
                    model="tiny",
                    prompt=prompts[i],
                    stream=True,
                    **{**SAMPLING, "seed": 100 + i, "max_tokens": 30},
                )
            )
            streamed[i] = (
                "".join(c.choices[0].text for c in chunks),
                {c.id for c in chunks},
                [c.choices[0].finish_reason for c in chunks],
            )
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failures == [] and sorted(streamed) == list(range(8))
    api = client(server)
    for i in range(8):
        text, ids, reasons = streamed[i]
        alone = api.completions.create(
            model="tiny", prompt=prompts[i], **{**SAMPLING, "seed": 100 + i, "max_tokens": 30}
        )
        assert text == alone.choices[0].text, i
        assert len(ids) == 1  # every chunk of a stream carries its own request's id
        assert reasons[-1] in ("stop", "length") and reasons.count(None) == len(reasons) - 1
    assert len({next(iter(streamed[i][1])) for i in range(8)}) == 8
    assert len({streamed[i][0] for i in range(8)}) > 1  # different seeds and prompts, different replies


def open_stream(server: ServerProcess, body: dict[str, Any]) -> tuple[socket.socket, bytes]:
    """A raw request; returns the socket and what was read once two events have arrived."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    received = b""
    while received.count(b"data: ") < 2:
        piece = sock.recv(65536)
        assert piece, received
        received += piece
    return sock, received


def test_client_disconnect_stops_generation(server: ServerProcess) -> None:
    """``long`` would write 1,000 tokens; the client leaves after two events and the server stops at once."""
    body = {
        "model": "long",
        "prompt": "In the beginning",
        "max_tokens": 1000,
        "temperature": 0,
        "stream": True,
    }
    sock, received = open_stream(server, body)
    sock.close()
    request_id = re.search(rb'"id": "(cmpl-[0-9a-f]+)"', received).group(1).decode()
    line = server.wait_for(
        rf"{request_id} long: 1/1 choices, \d+ prompt \(\d+ cached\) \+ (\d+) new tokens .*; stopped \(client disconnected\) "
        r"after \d+ of up to 1000 new tokens"
    )
    assert int(line.group(1)) < 500

    # Without streaming: the server watches the connection while it generates the whole reply.
    data = json.dumps(
        {"model": "long", "prompt": "And God said", "max_tokens": 999, "temperature": 0}
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    server.wait_for(r"long: queued 1 choice of up to 999 new tokens")  # the server has the request
    sock.close()
    line = server.wait_for(
        r"long: [01]/1 choices, \d+ prompt \(\d+ cached\) \+ (\d+) new tokens .*; stopped \(client disconnected\) after \d+ of "
        r"up to 999 new tokens"
    )
    assert int(line.group(1)) < 500
    assert client(server).completions.create(model="long", prompt="x", max_tokens=3, temperature=0).choices


# --------------------------------------------------------------------------------- starting, stopping


def test_sigterm_cuts_the_reply_in_progress_and_exits_cleanly(spare: ServerProcess) -> None:
    body = {
        "model": "long",
        "prompt": "In the beginning",
        "max_tokens": 1000,
        "temperature": 0,
        "stream": True,
    }
    sock, received = open_stream(spare, body)
    spare.proc.send_signal(signal.SIGTERM)
    sock.settimeout(60)
    while True:
        piece = sock.recv(65536)
        if not piece:
            break
        received += piece
    sock.close()
    assert b'"code": "shutting_down"' in received and b"[DONE]" not in received
    assert spare.proc.wait(60) == 0
    assert spare.out.read_text().splitlines()[-1] == "Stopped."
    assert "SIGTERM: stopping (replies in progress end now)." in spare.err.read_text()
    assert re.search(
        r"stopped \(server shutting down\) after \d+ of up to 1000 new tokens", spare.err.read_text()
    )


def test_ctrl_c_stops_a_streaming_client_with_an_error(server: ServerProcess) -> None:
    """Last of the main server's tests: it stops the server."""
    api = client(server)
    chunks = api.completions.create(
        model="long", prompt="In the beginning", max_tokens=1000, temperature=0, stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for count, _ in enumerate(chunks):
            if count == 1:
                server.proc.send_signal(signal.SIGINT)
    assert caught.value.message == "The server is shutting down; the reply was cut short."
    assert server.proc.wait(60) == 0
    assert server.out.read_text().splitlines()[-1] == "Stopped."


def test_a_loading_model_answers_503(tiny_model: str) -> None:
    """In-process: a server whose model never finishes loading (the loader is not started)."""
    import uvicorn

    from gpt2tui.core.generation import resolve
    from gpt2tui.serve import ServedModel, ServerState, bind, build_app

    state = ServerState([ServedModel("tiny", resolve(tiny_model))])
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(state), lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = sock.getsockname()[1]
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            api.completions.create(model="tiny", prompt="x")
        assert caught.value.status_code == 503
        assert caught.value.body["message"] == "The model 'tiny' is still loading; try again in a moment."
        assert caught.value.response.headers["retry-after"] == "1"
        with pytest.raises(openai.APIStatusError) as caught:
            api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (503, {"status": "loading"})
        connection.close()
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gpt2tui_command("serve", *args), capture_output=True, text=True, timeout=120)


def test_startup_refusals_are_one_sentence(tiny_model: str) -> None:
    run = run_cli("no/such/model", "--host", "0.0.0.0", "--port", "0")  # not a Hub id either: refused at once
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        "gpt2tui: warning: listening on 0.0.0.0 with no API key: anyone who can reach this port can use the "
        "models; set --api-key (or GPT2TUI_API_KEY), or keep the default 127.0.0.1 and use an SSH tunnel.",
        "gpt2tui: No stored model named 'no/such/model' and no folder at that path; 'gpt2tui models list' shows the "
        "stored models.",
    ]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        run = run_cli(tiny_model, "--port", str(port))
    finally:
        taken.close()
    assert (run.returncode, run.stderr) == (
        2,
        f"gpt2tui: Port {port} on 127.0.0.1 is in use; choose another with --port.\n",
    )
    run = run_cli(tiny_model, "--api-key", " ")
    assert (run.returncode, run.stderr) == (
        2,
        "gpt2tui: --api-key must not be empty (leave it out to serve without a key).\n",
    )
    run = run_cli(tiny_model, tiny_model, "--port", "0")
    assert (run.returncode, run.stderr) == (
        2,
        "gpt2tui: The model 'tiny' is named twice; serve each model once.\n",
    )
    run = run_cli(tiny_model, "--prompt-caches", "-1")
    assert (run.returncode, run.stdout, run.stderr) == (
        2,
        "",
        "gpt2tui: --prompt-caches must be 0 or more, not -1.\n",
    )


def test_exposure_warning() -> None:
    from gpt2tui.serve import exposure_warning

    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None
    assert exposure_warning("0.0.0.0", "key") is None
    assert "with no API key" in (exposure_warning("0.0.0.0", None) or "")
    assert "with no API key" in (exposure_warning("192.168.1.20", None) or "")


def test_sampling_fields_map_to_strategies() -> None:
    from gpt2tui.core.generation import GenerationSettings
    from gpt2tui.serve import Fields, _settings

    def settings(**body: Any) -> GenerationSettings:
        return _settings(Fields(body), "max_tokens")[0]

    assert settings() == GenerationSettings()  # gpt2tui generate's defaults
    assert settings(temperature=0).strategy == "greedy"
    assert settings(temperature=0.005).strategy == "greedy"
    top_k = settings(top_k=5, temperature=1.2)
    assert (top_k.strategy, top_k.top_k, top_k.temperature) == ("top-k", 5, 1.2)
    top_p = settings(top_p=0.5, temperature=0.7)
    assert (top_p.strategy, top_p.top_p, top_p.temperature) == ("top-p", 0.5, 0.7)
    beam = settings(num_beams=3)
    assert (beam.strategy, beam.num_beams) == ("beam", 3)
    # Clients send temperature 0 for a deterministic reply; beam search is one (it was refused: "temperature
    # must be at least 0.01, not 0.0.").
    assert settings(num_beams=3, temperature=0) == beam
    assert settings(repetition_penalty=1.3).repetition_penalty == 1.3


def test_help_does_not_import_the_server_stack() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom gpt2tui.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('starlette', 'uvicorn', 'torch') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.strip().splitlines()[-1] == "HEAVY []" and "serve" in run.stdout
