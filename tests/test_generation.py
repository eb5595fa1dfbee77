"""Streaming generation on a tiny trained model."""

from __future__ import annotations

import threading
import time

import pytest

from gpt2tui.core import generation
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import (
    GenerationSettings,
    _held_back,
    chat_prompt,
    complete,
    load,
    stream,
)

GREEDY = GenerationSettings(strategy="greedy", max_new_tokens=30, seed=0)


@pytest.fixture
def loaded(tiny_model: str) -> generation.LoadedModel:
    return load(tiny_model)


def test_settings_validate_describe_and_map_to_generate_kwargs() -> None:
    assert GenerationSettings().describe() == "top-p T=0.80 p=0.95 max=100"
    assert GenerationSettings(strategy="top-k", top_k=7).describe() == "top-k T=0.80 k=7 max=100"
    assert GenerationSettings(strategy="beam", num_beams=3).describe() == "beam beams=3 max=100"
    assert GREEDY.generate_kwargs()["do_sample"] is False
    assert GenerationSettings(strategy="beam").generate_kwargs()["num_beams"] == 4
    assert GenerationSettings(strategy="top-p").generate_kwargs()["top_k"] == 0
    with pytest.raises(UserError, match=r"^--temperature must be at least 0.01, not 0.0\.$"):
        GenerationSettings(temperature=0.0).validate()
    with pytest.raises(
        UserError, match=r"^Unknown strategy 'nucleus'; choose one of greedy, beam, top-k, top-p\.$"
    ):
        GenerationSettings(strategy="nucleus").validate()  # type: ignore[arg-type]


def test_greedy_streams_in_chunks_and_is_deterministic(loaded: generation.LoadedModel) -> None:
    first = stream(loaded.model, loaded.tokenizer, "What is Mars?", GREEDY, template=loaded.template)
    chunks = list(first)
    assert len(chunks) > 1
    assert "".join(chunks) == first.reply.text
    assert 0 < first.reply.new_tokens <= 30 and first.reply.seconds > 0 and not first.reply.stopped
    again = complete(loaded.model, loaded.tokenizer, "What is Mars?", GREEDY, template=loaded.template)
    assert again == first.reply.text


def test_sampling_with_a_seed_repeats_and_records_the_seed(loaded: generation.LoadedModel) -> None:
    settings = GenerationSettings(strategy="top-k", seed=123, max_new_tokens=20)
    a = stream(loaded.model, loaded.tokenizer, "The Sun", settings)
    b = stream(loaded.model, loaded.tokenizer, "The Sun", settings)
    assert "".join(a) == "".join(b)
    assert a.reply.seed == 123
    unseeded = stream(loaded.model, loaded.tokenizer, "The Sun", settings.replace(seed=None))
    list(unseeded)
    assert isinstance(unseeded.reply.seed, int)


def test_beam_search_yields_the_whole_reply_once(loaded: generation.LoadedModel) -> None:
    beam = stream(
        loaded.model,
        loaded.tokenizer,
        "What is Mars?",
        GenerationSettings(strategy="beam", max_new_tokens=20),
        template=loaded.template,
    )
    chunks = list(beam)
    assert len(chunks) <= 1 and "".join(chunks) == beam.reply.text


def test_stop_event_ends_generation_at_the_next_token(loaded: generation.LoadedModel, monkeypatch) -> None:
    stop = threading.Event()
    settings = GenerationSettings(strategy="top-k", max_new_tokens=200, seed=1)
    # Forbid end-of-text so the model would run the full 200 tokens if not stopped.
    real = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate", lambda *a, **k: real(*a, min_new_tokens=200, **k))
    s = stream(loaded.model, loaded.tokenizer, "The", settings, stop)
    received = []
    for chunk in s:
        received.append(chunk)
        stop.set()
    assert s.reply.stopped
    assert s.reply.new_tokens < 200
    assert "".join(received) == s.reply.text


def test_errors_in_the_generating_thread_reach_the_consumer(
    loaded: generation.LoadedModel, monkeypatch
) -> None:
    def broken_generate(*args, **kwargs):
        time.sleep(0.05)
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(loaded.model, "generate", broken_generate)
    with pytest.raises(RuntimeError, match="device-side assert"):
        list(stream(loaded.model, loaded.tokenizer, "hi", GREEDY))


def test_prompt_longer_than_the_context_is_trimmed_from_the_left(loaded: generation.LoadedModel) -> None:
    long_prompt = "the Sun and the Moon " * 400
    s = stream(loaded.model, loaded.tokenizer, long_prompt, GREEDY)
    list(s)
    assert s.reply.prompt_tokens == loaded.context_length - 30


def test_stop_text_is_never_shown_even_across_chunks() -> None:
    assert _held_back("Answer: yes\nQue", "\nQuestion:") == 4
    assert _held_back("Answer: yes", "\nQuestion:") == 0
    assert _held_back("abc", None) == 0
    assert _held_back("yes\nAns", ("\nQuestion:", "\nAnswer:")) == 4
    assert _held_back("yes\n", ("\nQuestion:", "\nAnswer:")) == 1


def test_stop_text_truncates_the_reply(loaded: generation.LoadedModel, monkeypatch) -> None:
    # A model that always says the same thing, including a stop text, through a real streamer.
    class Scripted:
        def __init__(self, real):
            self.real = real

        def __call__(self, input_ids, streamer=None, **kwargs):
            import torch

            ids = loaded.tokenizer(" Four.\nQuestion: next?", add_special_tokens=False)["input_ids"]
            out = torch.cat([input_ids, torch.tensor([ids])], dim=1)
            if streamer is not None:
                streamer.put(input_ids[0])
                for i in ids:
                    streamer.put(torch.tensor([i]))
                streamer.end()
            return out

    monkeypatch.setattr(loaded.model, "generate", Scripted(loaded.model.generate))
    s = stream(
        loaded.model, loaded.tokenizer, "2+2?", GREEDY, template=loaded.template, stop_text=loaded.stop_text
    )
    assert "".join(s) == " Four."
    assert s.reply.text == " Four."


def test_chat_prompt_uses_the_template_and_drops_old_turns(loaded: generation.LoadedModel) -> None:
    text = chat_prompt([("Hi?", "Hello.")], "What is Mars?", loaded, 20)
    assert text == "Question: Hi?\nAnswer: Hello.<|endoftext|>Question: What is Mars?\nAnswer:"
    history = [(f"Question number {i} about planets?", "An answer about planets. " * 5) for i in range(30)]
    trimmed = chat_prompt(history, "Last?", loaded, 50)
    assert trimmed.endswith("Question: Last?\nAnswer:")
    assert "number 0 " not in trimmed and "number 29 " in trimmed
    assert len(loaded.tokenizer(trimmed)["input_ids"]) <= loaded.context_length - 50


def test_loading_an_unknown_model_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"^No stored model named '\./ghost' and no folder at that path"):
        load("./ghost")
    with pytest.raises(
        UserError, match=r"^Could not download 'ghost': the Hugging Face Hub cannot be reached"
    ):
        load("ghost")


def test_a_large_max_new_tokens_never_crowds_out_the_question(loaded: generation.LoadedModel) -> None:
    ctx = loaded.context_length
    prompt = chat_prompt([], "What is the largest planet?", loaded, ctx)
    assert prompt == "Question: What is the largest planet?\nAnswer:"
    s = stream(loaded.model, loaded.tokenizer, prompt, GREEDY.replace(max_new_tokens=ctx))
    list(s)
    assert s.reply.prompt_tokens == len(loaded.tokenizer(prompt)["input_ids"])  # nothing trimmed
    long = stream(loaded.model, loaded.tokenizer, "word " * 1000, GREEDY.replace(max_new_tokens=ctx))
    list(long)
    assert long.reply.prompt_tokens == ctx // 2  # a long prompt keeps half the context


def test_the_reply_says_how_many_prompt_tokens_were_cut_to_fit(loaded: generation.LoadedModel) -> None:
    """The chat shows a note when the core cut the prompt: the count travels on the Reply."""
    ctx = loaded.context_length
    long_prompt = "the Sun and the Moon " * 400
    total = len(loaded.tokenizer(long_prompt, add_special_tokens=False)["input_ids"])
    s = stream(loaded.model, loaded.tokenizer, long_prompt, GREEDY)
    list(s)
    assert s.reply.prompt_tokens == ctx - 30
    assert s.reply.prompt_trimmed == total - (ctx - 30) > 0
    short = stream(loaded.model, loaded.tokenizer, "the Sun", GREEDY)
    list(short)
    assert short.reply.prompt_trimmed == 0


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(strategy="greedy", max_new_tokens=30, seed=0),
        GenerationSettings(strategy="top-p", top_p=0.9, temperature=0.8, max_new_tokens=30, seed=5),
        GenerationSettings(strategy="top-k", top_k=20, max_new_tokens=30, seed=11),
    ],
    ids=["greedy", "top-p", "top-k"],
)
def test_chunks_carry_the_replys_tokens_and_log_probabilities(
    loaded: generation.LoadedModel, settings: GenerationSettings
) -> None:
    """Each chunk is a ``str`` with its tokens: together exactly ``reply.tokens``, from the same generation."""
    from tests.chunk_checks import assert_chunks_are_the_reply

    for prompt, batch_seconds in (("In the beginning", 0.0), ("The Sun", 0.02)):
        s = stream(loaded.model, loaded.tokenizer, prompt, settings, batch_seconds=batch_seconds)
        chunks = list(s)
        tokens = assert_chunks_are_the_reply(chunks, s.reply, tokenizer=loaded.tokenizer)
        assert loaded.tokenizer.decode([t.id for t in tokens], skip_special_tokens=True) == s.reply.text
        warped = [t.logprob != t.model_logprob for t in tokens]
        assert any(warped) if settings.strategy != "greedy" else not any(warped)
        if tokens[-1].id == loaded.tokenizer.eos_token_id:  # end-of-text adds no text, yet is in a chunk
            assert tokens[-1].text == ""


def test_a_stop_text_cutting_a_token_keeps_its_tokens_in_the_chunks(loaded: generation.LoadedModel) -> None:
    """A stop text that starts inside a token: the visible text ends mid-token, and the chunks still carry
    every token generated, the cut token's and the stop text's among them."""
    from tests.chunk_checks import assert_chunks_are_the_reply

    free = stream(loaded.model, loaded.tokenizer, "What is Mars?", GREEDY, template=loaded.template)
    text = "".join(free)
    pieces = free.reply.pieces
    starts = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    # The first token of two characters or more whose tail (and the next token's first character) first
    # occurs there: a stop text that cuts that token.
    at, stop = next(
        (starts[i] + 1, text[starts[i] + 1 : starts[i + 1] + 1])
        for i in range(1, len(pieces) - 1)
        if len(pieces[i]) >= 2
        and pieces[i + 1]
        and text.find(text[starts[i] + 1 : starts[i + 1] + 1]) == starts[i] + 1
    )
    cut = stream(
        loaded.model, loaded.tokenizer, "What is Mars?", GREEDY, template=loaded.template, stop_text=stop
    )
    chunks = list(cut)
    assert cut.reply.text == text[:at] and not cut.reply.stopped
    tokens = assert_chunks_are_the_reply(chunks, cut.reply, tokenizer=loaded.tokenizer, cut=True)
    assert [t.id for t in tokens] == [t for t, _ in free.reply.tokens][: len(tokens)]  # greedy: the same
    assert "".join(t.text for t in tokens).startswith(text[:at] + stop)


def test_a_beam_searchs_one_chunk_has_its_tokens_without_log_probabilities(
    loaded: generation.LoadedModel,
) -> None:
    """Beam search draws nothing: its chunk's tokens are the best beam's ids and texts, log-probabilities None
    (and ``reply.tokens`` stays empty)."""
    settings = GenerationSettings(strategy="beam", num_beams=3, max_new_tokens=20)
    for stop_text in (None, " the"):
        beam = stream(loaded.model, loaded.tokenizer, "In the beginning", settings, stop_text=stop_text)
        chunks = list(beam)
        assert len(chunks) == 1 and chunks[0] == beam.reply.text and beam.reply.tokens == []
        tokens = chunks[0].tokens
        assert len(tokens) == beam.reply.new_tokens > 0
        assert all(t.logprob is None and t.model_logprob is None for t in tokens)
        decoded = loaded.tokenizer.decode([t.id for t in tokens], skip_special_tokens=True)
        assert "".join(t.text for t in tokens) == decoded
        assert (
            decoded == beam.reply.text if stop_text is None else decoded.startswith(beam.reply.text + " the")
        )


def test_a_stopped_reply_s_chunks_carry_every_token_it_made(
    loaded: generation.LoadedModel, monkeypatch
) -> None:
    from tests.chunk_checks import assert_chunks_are_the_reply

    stop = threading.Event()
    real = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate", lambda *a, **k: real(*a, min_new_tokens=200, **k))
    s = stream(
        loaded.model,
        loaded.tokenizer,
        "The",
        GenerationSettings(strategy="top-k", max_new_tokens=200, seed=1),
        stop,
    )
    chunks = []
    for chunk in s:
        chunks.append(chunk)
        stop.set()
    assert s.reply.stopped and s.reply.new_tokens < 200
    assert_chunks_are_the_reply(chunks, s.reply, tokenizer=loaded.tokenizer)
