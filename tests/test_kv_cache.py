"""The growing key/value cache: the same tokens as transformers' own cache, a buffer copy every doubling only.

A reply streamed by the core (which generates with this cache) is compared token for token with
``model.generate`` left to its default cache, for greedy and for seeded sampling, over hundreds of tokens (so
the buffers double several times); the layer is compared with ``DynamicLayer`` through crops and the beam
reorders that replace its tensors; and the work it saves is counted, not timed: buffers made per reply.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from gpt2tui.core import kv_cache
from gpt2tui.core.generation import GenerationSettings, ReplyStream
from gpt2tui.core.kv_cache import KV_CACHE_ENV, MIN_CAPACITY, growing_cache, growing_layer
from gpt2tui.core.models import train_tokenizer

TOKENS = 300
PROMPT = "In the beginning God created the heaven and the earth."


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[Any, Any]:
    """A small untrained GPT-2 that always writes ``TOKENS`` new tokens (end-of-text suppressed until then)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer([PROMPT * 50], vocab_size=300, model_max_length=2048)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=64, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.min_new_tokens = TOKENS
    return model, tokenizer


def default_generate(model: Any, tokenizer: Any, settings: GenerationSettings) -> list[int]:
    """``model.generate`` with transformers' own cache, greedy."""
    import torch

    ids = torch.tensor([tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.eos_token_id,
        )
    return [int(token) for token in out[0, ids.shape[1] :]]


def streamed_ids(model: Any, tokenizer: Any, settings: GenerationSettings) -> list[int]:
    reply = ReplyStream(model, tokenizer, PROMPT, settings, threading.Event())
    for _ in reply:
        pass
    return [token for token, _ in reply.reply.tokens]


def test_greedy_replies_are_token_for_token_those_of_the_default_cache(
    model_and_tokenizer: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = model_and_tokenizer
    settings = GenerationSettings(strategy="greedy", max_new_tokens=TOKENS)
    made: list[Any] = []
    real = kv_cache.growing_cache

    def spy(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(kv_cache, "growing_cache", spy)
    ours = streamed_ids(model, tokenizer, settings)
    assert len(ours) == TOKENS
    assert ours == default_generate(model, tokenizer, settings)
    # The reply used the growing cache, and its buffers were made O(log n) times, not once per token.
    (kv,) = made
    doublings = math.ceil(math.log2((TOKENS + 20) / MIN_CAPACITY)) + 1
    for layer in kv.layers:
        assert type(layer) is growing_layer()
        assert 1 <= layer.reallocations <= doublings
        assert layer.keys.shape[-2] == layer.get_seq_length() <= layer.key_buffer.shape[-2]


def test_seeded_sampling_is_the_same_with_either_cache(
    model_and_tokenizer: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = model_and_tokenizer
    settings = GenerationSettings(strategy="top-p", top_p=0.9, temperature=0.9, max_new_tokens=TOKENS, seed=7)
    ours = streamed_ids(model, tokenizer, settings)
    monkeypatch.setenv(KV_CACHE_ENV, "default")
    assert growing_cache(model) is None  # the off switch: generate keeps its own cache
    assert streamed_ids(model, tokenizer, settings) == ours


def test_a_buffer_never_holds_more_than_the_reply_can_use(model_and_tokenizer: tuple[Any, Any]) -> None:
    import torch

    model, _ = model_and_tokenizer
    kv = growing_cache(model, limit=100)
    layer = kv.layers[0]
    for _ in range(99):
        layer.update(torch.zeros(1, 2, 1, 32), torch.zeros(1, 2, 1, 32))
    assert layer.key_buffer.shape[-2] == 100  # doubled from 64, but not past the limit
    assert layer.reallocations == 2


def test_the_layer_follows_dynamic_layer_through_crops_and_reorders() -> None:
    """Each step applied to both layers; their keys and values are equal after every one."""
    import torch
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    ours, theirs = growing_layer()(), DynamicLayer()

    def both(step: str, *args: Any) -> None:
        if step == "update":
            keys, values = args
            assert all(
                torch.equal(a, b)
                for a, b in zip(ours.update(keys, values), theirs.update(keys, values), strict=True)
            )
        else:
            getattr(ours, step)(*args)
            getattr(theirs, step)(*args)
        assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values), step

    def states(batch: int, length: int) -> tuple[Any, Any]:
        return torch.randn(batch, 2, length, 8), torch.randn(batch, 2, length, 8)

    both("update", *states(2, 30))  # a prompt
    for _ in range(50):  # past the first buffer: a doubling
        both("update", *states(2, 1))
    both("crop", -5)  # a shorter view of the same buffer: the next update writes after it
    both("update", *states(2, 3))
    both("reorder_cache", torch.tensor([1, 0]))  # a new tensor: copied into a new buffer
    both("update", *states(2, 1))
    both("batch_repeat_interleave", 2)
    both("update", *states(4, 1))
    assert ours.get_seq_length() == theirs.get_seq_length() == 30 + 50 - 5 + 3 + 1 + 1
