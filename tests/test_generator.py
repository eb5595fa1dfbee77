"""Replies from a model loaded in a child process (``core.generator``): the same text as in-process, stop,
load errors and a child that dies, each as a sentence. The session's tiny model (conftest) is used; every
test closes the child it starts."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpt2tui.core import generation
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import GenerationSettings
from gpt2tui.core.generator import GeneratorProcess

GREEDY = GenerationSettings(strategy="greedy", seed=1, max_new_tokens=24)


def started(trained_tiny: Path) -> Iterator[GeneratorProcess]:
    process = GeneratorProcess(str(trained_tiny))
    try:
        yield process.wait_loaded()
    finally:
        process.close()


@pytest.fixture(scope="module")
def child(trained_tiny: Path) -> Iterator[GeneratorProcess]:
    """One child for the tests that leave it alive (each reply has its own id; a child takes ~5 s to start)."""
    yield from started(trained_tiny)


@pytest.fixture
def own_child(trained_tiny: Path) -> Iterator[GeneratorProcess]:
    """A child for one test alone (one that kills it)."""
    yield from started(trained_tiny)


def until(condition: Callable[[], bool], within: float = 30.0) -> bool:
    """Whether ``condition()`` holds within ``within`` seconds (polled)."""
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def ended(process: GeneratorProcess, within: float = 30.0) -> bool:
    return until(lambda: process._process.poll() is not None, within)


def test_a_reply_from_the_child_is_the_reply_in_process(child: GeneratorProcess, trained_tiny: Path) -> None:
    loaded = generation.load(str(trained_tiny))
    assert (child.name, child.context_length) == (loaded.name, loaded.context_length)
    history = [("What is Mars?", " A planet.")]
    for mode in ("chat", "raw"):
        here = loaded.reply(mode, "Which planet is largest?", history, GREEDY)
        there = child.reply(mode, "Which planet is largest?", history, GREEDY)
        assert "".join(there) == "".join(here) == here.reply.text == there.reply.text
        assert (there.reply.new_tokens, there.reply.prompt_tokens, there.reply.seed) == (
            here.reply.new_tokens,
            here.reply.prompt_tokens,
            1,
        )
        assert not there.reply.stopped


def test_delivered_chunks_come_from_the_reader_thread_and_join_to_the_reply(child: GeneratorProcess) -> None:
    iterated = child.reply("raw", "In the beginning", [], GREEDY)
    expected = "".join(iterated)
    chunks: list[str] = []
    threads: set[str] = set()

    def take(chunk: str) -> None:
        chunks.append(chunk)
        threads.add(threading.current_thread().name)

    delivered = child.reply("raw", "In the beginning", [], GREEDY)
    delivered.deliver(take)
    assert "".join(chunks) == expected == delivered.reply.text
    assert delivered.reply.new_tokens == iterated.reply.new_tokens
    assert threads == {"gpt2tui-generator-read"}  # not this thread: one hop fewer per chunk


def test_a_started_reply_generates_before_anyone_follows_it(child: GeneratorProcess) -> None:
    expected = "".join(child.reply("raw", "In the beginning", [], GREEDY))
    chunks: list[str] = []
    stream = child.reply("raw", "In the beginning", [], GREEDY).start(chunks.append)
    deadline = time.monotonic() + 30
    while not chunks and time.monotonic() < deadline:  # nobody iterates: the request went out at start
        time.sleep(0.01)
    assert chunks
    stream.deliver(chunks.append)  # follows the started reply to its end; the request is not sent again
    assert "".join(chunks) == expected == stream.reply.text


def test_delivery_of_a_reply_that_fails_raises_its_sentence(own_child: GeneratorProcess) -> None:
    os.kill(own_child.pid, signal.SIGKILL)
    with pytest.raises(UserError, match="The model process ended"):
        own_child.reply("raw", "x", [], GREEDY).deliver(lambda chunk: None)


def test_stop_ends_the_childs_reply_and_the_next_reply_runs(child: GeneratorProcess) -> None:
    stop = threading.Event()
    stop.set()  # before the first token: the child stops at its first check
    settings = GREEDY.replace(max_new_tokens=200)
    reply = child.reply("raw", "In the beginning", [], settings, stop)
    text = "".join(reply)
    assert reply.reply.stopped and reply.reply.new_tokens < 200 and reply.reply.text == text
    again = child.reply("raw", "In the beginning", [], GREEDY)
    assert "".join(again) == again.reply.text and not again.reply.stopped


def test_a_child_told_it_shares_the_machine_computes_its_replies_with_its_share(
    child: GeneratorProcess,
) -> None:
    planned = child.planned
    assert planned >= 1 and child.threads == planned  # alone: every core it found free
    half = max(1, planned // 2)
    try:
        child.share(2)
        assert until(lambda: child.threads == half)
        shared = child.reply("raw", "The Sun", [], GREEDY)
        list(shared)
        assert shared.reply.new_tokens > 0 and shared.reply.threads == half  # its generating thread's count
    finally:
        child.share(1)
    assert until(lambda: child.threads == planned)
    alone = child.reply("raw", "The Sun", [], GREEDY)
    list(alone)
    assert alone.reply.new_tokens > 0 and alone.reply.threads == planned


def test_invalid_settings_are_refused_in_the_callers_words(child: GeneratorProcess) -> None:
    with pytest.raises(UserError, match="--top-p must be in"):
        child.reply("raw", "x", [], GREEDY.replace(top_p=0.0))


def test_a_missing_model_is_the_stores_sentence(home: Path) -> None:
    process = GeneratorProcess("./no-such-model")
    try:
        with pytest.raises(UserError, match="No stored model named '\\./no-such-model'"):
            process.wait_loaded()
    finally:
        process.close()


def test_a_child_that_dies_fails_the_reply_with_a_sentence(trained_tiny: Path, tmp_path: Path) -> None:
    process = GeneratorProcess(str(trained_tiny), log_file=tmp_path / "gpt2tui.log").wait_loaded()
    try:
        reply = iter(process.reply("raw", "In the beginning", [], GREEDY.replace(max_new_tokens=200)))
        os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(UserError, match=r"The model process ended during the reply \(signal 9\); see "):
            list(reply)
        with pytest.raises(UserError, match="The model process ended"):
            list(process.reply("raw", "again", [], GREEDY))
    finally:
        process.close()


def test_closing_or_leaving_ends_the_child(trained_tiny: Path) -> None:
    process = GeneratorProcess(str(trained_tiny))
    process.close()  # even before it has loaded anything
    assert ended(process)
    process = GeneratorProcess(str(trained_tiny)).wait_loaded()
    assert process._process.stdin is not None
    process._process.stdin.close()  # what the parent's exit does: end of its input
    assert ended(process)
    process.close()


def test_how_much_of_the_prompt_was_cut_crosses_the_pipe(child: GeneratorProcess, trained_tiny: Path) -> None:
    loaded = generation.load(str(trained_tiny))
    long_prompt = "the Sun and the Moon " * 400
    here = loaded.reply("raw", long_prompt, [], GREEDY)
    there = child.reply("raw", long_prompt, [], GREEDY)
    assert "".join(there) == "".join(here)
    assert there.reply.prompt_trimmed == here.reply.prompt_trimmed > 0
    assert (
        there.reply.prompt_tokens == here.reply.prompt_tokens == child.context_length - GREEDY.max_new_tokens
    )


def test_a_grid_cell_from_the_child_is_compare_decodings_cell(
    child: GeneratorProcess, trained_tiny: Path
) -> None:
    """The TUI's grid generates in the chat's child: the same text and figures as ``compare-decoding``."""
    from gpt2tui.core.compare import grid_settings, reply_cell

    loaded = generation.load(str(trained_tiny))
    for label, settings in grid_settings(GenerationSettings(max_new_tokens=8))[:3]:  # greedy, beam, top-k
        remote = child.cell(label, "Who are you?", settings)
        text = "".join(remote)
        here = reply_cell(label, loaded, "Who are you?", settings)
        assert remote.cell is not None and text == remote.cell.text == here.text
        timing = {"seconds", "tokens_per_second"}
        theirs = {k: v for k, v in remote.cell.to_dict().items() if k not in timing}
        # The child plans its own threads (fewer on a busy machine), and a matmul split differently rounds
        # differently: the text is the same, a mean log-probability may differ in its last bits.
        assert theirs == pytest.approx(
            {k: v for k, v in here.to_dict().items() if k not in timing}, rel=1e-5
        ), label


def test_token_texts_and_probabilities_cross_the_pipe(child: GeneratorProcess) -> None:
    """The chat colours a reply by probability from what the child sends: a text per token, joining to it."""
    stream = child.reply(
        "raw", "In the beginning", [], GenerationSettings(strategy="top-p", seed=5, max_new_tokens=12)
    )
    text = "".join(stream)
    reply = stream.reply
    assert len(reply.pieces) == len(reply.tokens) == reply.new_tokens > 0
    assert "".join(reply.pieces).startswith(text) and all(lp <= 0 for _, lp in reply.tokens)


def test_chunks_from_the_child_carry_their_tokens(child: GeneratorProcess, trained_tiny: Path) -> None:
    """The chunk lines bring each chunk's tokens: iterated or delivered, the child's chunks are ``Chunk`` s
    whose tokens are the reply's, with the log-probabilities exactly as generated (in-process, the same to
    within rounding: the child may have kept the prompt's keys and values from an earlier reply)."""
    from gpt2tui.core.compare import reply_cell
    from gpt2tui.core.generation import Chunk
    from tests.chunk_checks import assert_chunks_are_the_reply, assert_same_tokens, tokens_of

    loaded = generation.load(str(trained_tiny))
    for settings in (GREEDY, GenerationSettings(strategy="top-p", seed=5, max_new_tokens=24)):
        here = loaded.reply("raw", "In the beginning", [], settings)
        expected = tokens_of(list(here))
        assert len(expected) == here.reply.new_tokens > 0
        there = child.reply("raw", "In the beginning", [], settings)
        assert_same_tokens(
            assert_chunks_are_the_reply(list(there), there.reply, tokenizer=loaded.tokenizer), expected
        )
        delivered: list[Chunk] = []
        sent = child.reply("raw", "In the beginning", [], settings)
        sent.deliver(delivered.append)
        assert_same_tokens(
            assert_chunks_are_the_reply(delivered, sent.reply, tokenizer=loaded.tokenizer), expected
        )
    beam = GenerationSettings(strategy="beam", num_beams=3, max_new_tokens=12)
    here_beam = [chunk.tokens for chunk in loaded.reply("raw", "In the beginning", [], beam)]
    remote_beam = child.reply("raw", "In the beginning", [], beam)
    there_beam = [chunk.tokens for chunk in remote_beam]
    assert there_beam == here_beam and len(there_beam) == 1
    assert len(there_beam[0]) == remote_beam.reply.new_tokens > 0
    assert all(t.logprob is None and t.model_logprob is None for t in there_beam[0])
    # A grid cell's chunks too (compare's reply_cell in the child).
    in_process: list[str] = []
    reply_cell("greedy", loaded, "Who are you?", GREEDY, on_text=in_process.append)
    cell_chunks = list(child.cell("greedy", "Who are you?", GREEDY))
    assert_same_tokens(tokens_of(cell_chunks), tokens_of(in_process))
    assert len(tokens_of(cell_chunks)) > 0


def test_the_childs_next_turn_reuses_the_conversation_it_computed(own_child: GeneratorProcess) -> None:
    first = own_child.reply("chat", "What is Mars?", [], GREEDY)
    text = "".join(first)
    second = own_child.reply("chat", "Which planet is largest?", [("What is Mars?", text)], GREEDY)
    "".join(second)
    assert first.reply.cached_tokens == 0
    assert first.reply.prompt_tokens <= second.reply.cached_tokens < second.reply.prompt_tokens
