"""The prompt cache: a chat turn computes only the part of its prompt the previous generation had not."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gpt2tui.core import generation
from gpt2tui.core.generation import GenerationSettings, load, stream
from gpt2tui.core.kv_cache import growing_cache, reserve
from gpt2tui.core.prompt_cache import PROMPT_CACHE_ENV, PromptCache, shared_prefix

GREEDY = GenerationSettings(strategy="greedy", max_new_tokens=12, seed=0)
SAMPLED = GenerationSettings(strategy="top-k", top_k=20, max_new_tokens=12, seed=7)
QUESTIONS = ("What is Mars?", "How far is the Moon?", "What is Venus?")


@pytest.fixture
def loaded(tiny_model: str) -> generation.LoadedModel:
    return load(tiny_model)


@contextmanager
def forward_lengths(loaded: generation.LoadedModel) -> Iterator[list[int]]:
    """The number of positions each forward pass of the model computes."""
    lengths: list[int] = []

    def count(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = args[0] if args else kwargs.get("input_ids")
        lengths.append(int(ids.shape[1]))

    handle = loaded.model.transformer.register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield lengths
    finally:
        handle.remove()


def conversation(
    loaded: generation.LoadedModel, settings: GenerationSettings
) -> list[tuple[generation.Reply, list[int]]]:
    """Three chat turns, each with the ones before as history; each reply with its prefill's length."""
    history: list[tuple[str, str]] = []
    turns = []
    for question in QUESTIONS:
        with forward_lengths(loaded) as lengths:
            reply_stream = loaded.reply("chat", question, history, settings)
            text = "".join(reply_stream)
        turns.append((reply_stream.reply, lengths))
        history.append((question, text))
    return turns


def test_shared_prefix() -> None:
    assert shared_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert shared_prefix([1, 2], [1, 2, 3]) == 2
    assert shared_prefix([], [1]) == 0
    assert shared_prefix([9], [1]) == 0


def test_a_later_turn_computes_only_what_the_earlier_ones_had_not(loaded: generation.LoadedModel) -> None:
    turns = conversation(loaded, GREEDY)
    first, first_lengths = turns[0]
    assert first.cached_tokens == 0 and first_lengths[0] == first.prompt_tokens
    for (before, _), (reply, lengths) in itertools.pairwise(turns):
        assert reply.prompt_tokens > before.prompt_tokens
        assert reply.cached_tokens >= before.prompt_tokens  # at least the whole earlier prompt
        assert lengths[0] == reply.prompt_tokens - reply.cached_tokens  # the prefill computes the rest only
        assert all(n == 1 for n in lengths[1:])


def test_replies_are_the_same_with_and_without_the_cache(
    loaded: generation.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for settings in (GREEDY, SAMPLED):
        cached = conversation(loaded, settings)
        loaded.prompt_cache.clear()
        monkeypatch.setenv(PROMPT_CACHE_ENV, "default")
        full = conversation(loaded, settings)
        monkeypatch.delenv(PROMPT_CACHE_ENV)
        assert [r.text for r, _ in cached] == [r.text for r, _ in full]
        assert [r.cached_tokens for r, _ in full] == [0, 0, 0]
        assert [lengths[0] for _, lengths in full] == [r.prompt_tokens for r, _ in full]
        for (a, _), (b, _) in zip(cached, full, strict=True):
            assert [t for t, _ in a.tokens] == [t for t, _ in b.tokens]
            assert [lp for _, lp in a.tokens] == pytest.approx([lp for _, lp in b.tokens], abs=1e-4)


def test_the_same_prompt_again_computes_only_its_last_token(loaded: generation.LoadedModel) -> None:
    prompt = "The Sun and the Moon and the stars"
    first = stream(loaded.model, loaded.tokenizer, prompt, SAMPLED, prompt_cache=loaded.prompt_cache)
    first_text = "".join(first)
    with forward_lengths(loaded) as lengths:
        again = stream(loaded.model, loaded.tokenizer, prompt, SAMPLED, prompt_cache=loaded.prompt_cache)
        assert "".join(again) == first_text
    assert again.reply.cached_tokens == again.reply.prompt_tokens - 1 and lengths[0] == 1
    # A prompt sharing nothing computes everything.
    other = stream(loaded.model, loaded.tokenizer, "Venus", GREEDY, prompt_cache=loaded.prompt_cache)
    list(other)
    assert other.reply.cached_tokens == 0


def test_a_failed_or_abandoned_generation_leaves_nothing_to_reuse(
    loaded: generation.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = "The Sun and the Moon"
    list(stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=loaded.prompt_cache))
    assert loaded.prompt_cache.held > 0

    abandoned = iter(stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=loaded.prompt_cache))
    next(abandoned)
    abandoned.close()  # the consumer left mid-reply: what the cache holds is unknown
    assert loaded.prompt_cache.held == 0

    list(stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=loaded.prompt_cache))
    real_forward = loaded.model.forward
    calls = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("out of memory")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=loaded.prompt_cache))
    assert loaded.prompt_cache.held == 0
    monkeypatch.undo()
    retry = stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=loaded.prompt_cache)
    list(retry)
    assert retry.reply.cached_tokens == 0


def test_the_off_switch_keeps_nothing(
    loaded: generation.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROMPT_CACHE_ENV, "default")
    for _ in range(2):
        reply_stream = stream(
            loaded.model, loaded.tokenizer, "The Sun", GREEDY, prompt_cache=loaded.prompt_cache
        )
        list(reply_stream)
        assert reply_stream.reply.cached_tokens == 0 and loaded.prompt_cache.held == 0


def test_a_reused_growing_cache_doubles_up_to_the_longer_reply(loaded: generation.LoadedModel) -> None:
    import torch

    ids = torch.tensor([loaded.tokenizer("The Sun", add_special_tokens=False)["input_ids"]])
    kv = growing_cache(loaded.model, limit=ids.shape[1] + 4)
    cache = PromptCache()
    with torch.inference_mode():
        out = loaded.model.generate(
            ids, max_new_tokens=4, do_sample=False, past_key_values=kv, min_new_tokens=4
        )
        cache.store(out[0].tolist(), kv)
        longer = torch.cat([out, torch.tensor([[5, 6]])], dim=1)
        kept, reused = cache.take(longer[0].tolist())
        assert kept is kv and reused == out.shape[1] - 1
        reserve(kv, longer.shape[1] + 200)
        loaded.model.generate(
            longer, max_new_tokens=200, min_new_tokens=200, do_sample=False, past_key_values=kv
        )
    # Buffers doubled (64, 128, 256), not one reallocation per token past the first reply's limit.
    assert all(layer.reallocations <= 4 for layer in kv.layers)


def test_interleaved_conversations_each_reuse_their_own_cache(loaded: generation.LoadedModel) -> None:
    """Two conversations taking turns (two API clients): with a cache for each, each turn reuses its own
    conversation; with one cache, each pushes the other's out."""
    # Both start with "Question:": the second's first turn must not take the first's cache for that word.
    starts = ("Question: What is Mars?\nAnswer:", "Question: How far is the Moon?\nAnswer:")

    def turns(cache: PromptCache) -> list[generation.Reply]:
        prompts = list(starts)
        replies = []
        for _ in range(2):
            for at, prompt in enumerate(prompts):
                reply_stream = stream(loaded.model, loaded.tokenizer, prompt, GREEDY, prompt_cache=cache)
                prompts[at] = prompt + "".join(reply_stream) + " and then"
                replies.append(reply_stream.reply)
        return replies

    two = turns(PromptCache(capacity=2))
    assert [r.cached_tokens for r in two[:2]] == [0, 0]
    assert all(
        later.cached_tokens >= first.prompt_tokens for first, later in zip(two[:2], two[2:], strict=True)
    )
    one = turns(PromptCache(capacity=1))
    assert all(r.cached_tokens < 5 for r in one)  # at most a shared first word or two
    assert [r.new_tokens for r in one] == [r.new_tokens for r in two]
    none = PromptCache(capacity=0)
    assert all(r.cached_tokens == 0 for r in turns(none)) and none.held == 0
