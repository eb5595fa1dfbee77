"""Generation settings a user can type that used to crash, hang, or be accepted when they cannot work."""

from __future__ import annotations

import math

import pytest

from gpt2tui.core import generation
from gpt2tui.core.errors import UserError
from gpt2tui.core.generation import MAX_BEAMS, MAX_SEED, GenerationSettings, complete, load


def refused(**changes: object) -> str:
    with pytest.raises(UserError) as info:
        GenerationSettings(**changes).validate()  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        (
            {"seed": 2**64},
            "--seed must be a whole number from 0 to 9223372036854775807, not 18446744073709551616.",
        ),
        (
            {"seed": 2**63},
            "--seed must be a whole number from 0 to 9223372036854775807, not 9223372036854775808.",
        ),
        ({"seed": -1}, "--seed must be a whole number from 0 to 9223372036854775807, not -1."),
        (
            {"repetition_penalty": 1e-300},
            "--repetition-penalty must be from 0.01 to 100 (1 means no penalty), not 1e-300.",
        ),
        (
            {"repetition_penalty": 0.0},
            "--repetition-penalty must be from 0.01 to 100 (1 means no penalty), not 0.0.",
        ),
        (
            {"repetition_penalty": 1e300},
            "--repetition-penalty must be from 0.01 to 100 (1 means no penalty), not 1e+300.",
        ),
        ({"repetition_penalty": math.nan}, "--repetition-penalty must be a finite number, not nan."),
        (
            {"num_beams": 100_000},
            "--num-beams must be at most 16 (each beam is a full reply searched in parallel), not 100000.",
        ),
        ({"num_beams": 0}, "--num-beams must be at least 1, not 0."),
        ({"temperature": math.inf}, "--temperature must be a finite number, not inf."),
        ({"temperature": math.nan}, "--temperature must be a finite number, not nan."),
        ({"temperature": 1000.0}, "--temperature must be at most 100, not 1000.0."),
        ({"temperature": -1.0}, "--temperature must be at least 0.01, not -1.0."),
        ({"top_p": math.nan}, "--top-p must be a finite number, not nan."),
        ({"top_p": -0.5}, "--top-p must be in (0, 1], not -0.5."),
        ({"top_p": 1.5}, "--top-p must be in (0, 1], not 1.5."),
        ({"top_k": -3}, "--top-k must be at least 1, not -3."),
        ({"max_new_tokens": -1}, "--max-new-tokens must be at least 1, not -1."),
    ],
    ids=lambda v: str(v)[:40],
)
def test_each_bad_setting_has_its_sentence(changes: dict[str, object], sentence: str) -> None:
    assert refused(**changes) == sentence


def test_the_edges_are_accepted() -> None:
    assert MAX_SEED == 2**63 - 1 and MAX_BEAMS == 16
    for changes in (
        {"seed": 0},
        {"seed": MAX_SEED},
        {"repetition_penalty": 0.01},
        {"repetition_penalty": 100.0},
        {"num_beams": MAX_BEAMS},
        {"temperature": 100.0},
        {"top_p": 1.0},
    ):
        GenerationSettings(**changes).validate()  # type: ignore[arg-type]


@pytest.fixture
def loaded(tiny_model: str) -> generation.LoadedModel:
    return load(tiny_model)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "top-k", "top-p"])
@pytest.mark.parametrize("penalty", [0.01, 100.0, 100])
def test_the_accepted_penalty_range_generates(
    loaded: generation.LoadedModel, strategy: str, penalty: float
) -> None:
    """The ends of the range work with every strategy (an int penalty too: transformers wants a float)."""
    settings = GenerationSettings(strategy=strategy, repetition_penalty=penalty, max_new_tokens=8, seed=1)  # type: ignore[arg-type]
    assert isinstance(complete(loaded.model, loaded.tokenizer, "What is", settings), str)


def test_the_largest_seed_generates(loaded: generation.LoadedModel) -> None:
    settings = GenerationSettings(strategy="top-k", seed=MAX_SEED, max_new_tokens=5)
    assert complete(loaded.model, loaded.tokenizer, "Mars", settings) == complete(
        loaded.model, loaded.tokenizer, "Mars", settings
    )
