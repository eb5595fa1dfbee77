"""Per-stream token choice: HF's warps reproduced exactly, a private generator, and log-probabilities."""

from __future__ import annotations

import threading

import pytest
import torch

from gpt2tui.core.models import build_scratch
from gpt2tui.core.sampling import Choice, TokenChooser
from tests.conftest import QA_CSV


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    model, tokenizer = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    return model.eval(), tokenizer


def generate(pair, choice: Choice, prompt: str = "Question: What is", new: int = 12):  # type: ignore[no-untyped-def]
    model, tokenizer = pair
    chooser = TokenChooser(choice)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=new,
            min_new_tokens=new,
            logits_processor=[chooser],
            pad_token_id=tokenizer.eos_token_id,
        )
    return out[0, ids.shape[1] :].tolist(), chooser.snapshot(), ids


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.7, 0, 0.9), (1.3, 5, 1.0), (1.0, 0, 0.5)])
def test_the_warp_is_generates_own(temperature: float, top_k: int, top_p: float) -> None:
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = torch.randn(1, 300, generator=torch.Generator().manual_seed(1)) * 3
    expected = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    ours = TokenChooser(Choice(True, temperature, top_k, top_p)).warp(scores)
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.allclose(ours[~torch.isinf(ours)], expected[~torch.isinf(expected)])


def test_greedy_is_unchanged_and_its_logprobs_are_the_models(pair) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = pair
    tokens, records, ids = generate(pair, Choice(False))
    with torch.inference_mode():
        plain = model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, min_new_tokens=12,
            pad_token_id=tokenizer.eos_token_id,
        )[0, ids.shape[1] :].tolist()  # fmt: skip
        logits = model(torch.tensor([ids[0].tolist() + tokens])).logits[0].float()
    assert tokens == plain and [t for t, _ in records] == tokens
    # The reference: a second forward pass over prompt + reply (min_new_tokens masks end-of-text meanwhile).
    logprobs = torch.log_softmax(logits, dim=-1)
    for i, (token, logprob) in enumerate(records):
        row = logprobs[ids.shape[1] - 1 + i].clone()
        row[tokenizer.eos_token_id] = float("-inf")
        assert logprob == pytest.approx(float(torch.log_softmax(row, dim=-1)[token]), abs=1e-4)


def test_a_seed_gives_the_same_reply_alone_or_beside_other_streams(pair) -> None:  # type: ignore[no-untyped-def]
    choice = Choice(True, temperature=1.0, top_k=0, top_p=0.95, seed=1234)
    alone, _, _ = generate(pair, choice)
    results: dict[int, list[int]] = {}

    def run(i: int) -> None:
        results[i] = generate(pair, choice if i < 2 else Choice(True, seed=99))[0]

    stop = threading.Event()

    def noise() -> None:  # another user of torch's process-wide generator
        while not stop.is_set():
            torch.rand(100)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)] + [threading.Thread(target=noise)]
    for t in threads:
        t.start()
    for t in threads[:3]:
        t.join()
    stop.set()
    threads[3].join()
    assert results[0] == results[1] == alone
    assert results[2] != alone  # another seed, another reply
    assert generate(pair, Choice(True, seed=1235, top_p=0.95))[0] != alone


def test_sampled_logprobs_are_under_the_warped_distribution(pair) -> None:  # type: ignore[no-untyped-def]
    model, _ = pair
    choice = Choice(True, temperature=0.5, top_k=20, seed=7)
    tokens, records, ids = generate(pair, choice, new=6)
    chooser = TokenChooser(choice)
    with torch.inference_mode():
        logits = model(torch.tensor([ids[0].tolist() + tokens])).logits[0].float()
    for i, (token, logprob) in enumerate(records):
        row = logits[ids.shape[1] - 1 + i][None].clone()
        row[0, model.config.eos_token_id] = float("-inf")  # min_new_tokens' processor runs first
        warped = chooser.warp(row)
        assert logprob == pytest.approx(float(torch.log_softmax(warped, dim=-1)[0, token]), abs=1e-4)
        assert logprob > float("-inf")


def test_a_reply_carries_its_tokens_and_logprobs(pair) -> None:  # type: ignore[no-untyped-def]
    from gpt2tui.core.generation import GenerationSettings, stream

    model, tokenizer = pair
    settings = GenerationSettings(strategy="top-k", top_k=20, max_new_tokens=10, seed=5)
    first = stream(model, tokenizer, "Question: Why", settings)
    text = "".join(first)
    again = stream(model, tokenizer, "Question: Why", settings)
    assert "".join(again) == text and again.reply.tokens == first.reply.tokens
    ids = [token for token, _ in first.reply.tokens]
    assert len(ids) == first.reply.new_tokens and tokenizer.decode(ids, skip_special_tokens=True) == text
    assert all(logprob <= 0 for _, logprob in first.reply.tokens)
    beam = stream(model, tokenizer, "Question: Why", settings.replace(strategy="beam"))
    "".join(beam)
    assert beam.reply.tokens == []  # beam search keeps several sequences: no single draw to record


def test_a_sampled_reply_also_carries_its_tokens_logprobs_under_the_model(pair) -> None:  # type: ignore[no-untyped-def]
    """Coherence is measured on the model's own distribution: temperature and top-p must not flatter it."""
    from gpt2tui.core.generation import GenerationSettings, stream

    model, tokenizer = pair
    settings = GenerationSettings(strategy="top-p", temperature=0.5, top_p=0.8, max_new_tokens=12, seed=3)
    reply_stream = stream(model, tokenizer, "Question: What is", settings)
    "".join(reply_stream)
    reply = reply_stream.reply
    ids = tokenizer("Question: What is", add_special_tokens=False)["input_ids"]
    tokens = [t for t, _ in reply.tokens]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(torch.tensor([ids + tokens])).logits[0].float(), dim=-1)
    expected = [float(logprobs[len(ids) - 1 + i, token]) for i, token in enumerate(tokens)]
    assert len(reply.model_logprobs) == len(tokens) > 0
    assert reply.model_logprobs == pytest.approx(expected, abs=1e-4)
    assert reply.model_logprobs != pytest.approx([lp for _, lp in reply.tokens], abs=1e-3)  # as drawn differs
    greedy = stream(model, tokenizer, "Question: What is", settings.replace(strategy="greedy"))
    "".join(greedy)
    assert greedy.reply.model_logprobs == [lp for _, lp in greedy.reply.tokens]
