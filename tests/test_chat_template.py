"""The chat template saved with a model: ``apply_chat_template`` writes a conversation exactly as gpt2tui's
chat does (``generation.chat_prompt``, the way the model was trained); plain-text models get none."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError

from gpt2tui.core import generation
from gpt2tui.core.card import FormattingRecord
from gpt2tui.core.chat_template import chat_template, set_chat_template
from gpt2tui.core.data import DataSpec
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import TrainConfig, train
from tests.conftest import KJV_TXT

HISTORY = [("What is the Sun?", "A star."), ("How far is Mars?", " About 1.5 AU from the Sun.")]
MESSAGE = "Is Pluto a planet?"


def messages(history: list[tuple[str, str]], message: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system}] if system else []
    for question, answer in history:
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return [*turns, {"role": "user", "content": message}]


@pytest.fixture(scope="module")
def loaded(trained_tiny: Path) -> generation.LoadedModel:
    """The session's Q/A model, loaded from its folder as chat loads it (its tokenizer as saved)."""
    return generation.load(str(trained_tiny))


def test_a_qa_model_saves_its_chat_template_in_tokenizer_config(trained_tiny: Path) -> None:
    config = json.loads((trained_tiny / "tokenizer_config.json").read_text())
    assert config["chat_template"] == chat_template("qa", "Question: {prompt}\nAnswer:", "<|endoftext|>")
    assert not (trained_tiny / "chat_template.jinja").exists()  # one place, the one every reader knows


def test_apply_chat_template_writes_what_chat_prompt_writes(loaded: generation.LoadedModel) -> None:
    tokenizer = loaded.tokenizer
    assert tokenizer.chat_template  # read back from the saved folder
    expected = generation.chat_prompt(HISTORY, MESSAGE, loaded, max_new_tokens=8)
    assert expected == (  # the rows as trained: "Question: {q}\nAnswer: {a}<|endoftext|>"
        "Question: What is the Sun?\nAnswer: A star.<|endoftext|>"
        "Question: How far is Mars?\nAnswer: About 1.5 AU from the Sun.<|endoftext|>"
        "Question: Is Pluto a planet?\nAnswer:"
    )
    rendered = tokenizer.apply_chat_template(
        messages(HISTORY, MESSAGE), add_generation_prompt=True, tokenize=False
    )
    assert rendered == expected
    # A system message is left out (the model never saw one), so clients that always send one still work.
    with_system = messages(HISTORY, MESSAGE, system="You are a helpful astronomer.")
    assert tokenizer.apply_chat_template(with_system, add_generation_prompt=True, tokenize=False) == expected
    # Without the generation prompt, a finished conversation is exactly the training text of its rows.
    finished = [*messages(HISTORY[:1], HISTORY[1][0]), {"role": "assistant", "content": HISTORY[1][1]}]
    assert tokenizer.apply_chat_template(finished, tokenize=False) == expected.rsplit("Question: Is", 1)[0]
    ids = tokenizer.apply_chat_template(
        messages(HISTORY, MESSAGE), add_generation_prompt=True, return_dict=False
    )
    assert ids == tokenizer(expected, add_special_tokens=False)["input_ids"]


def test_a_prompt_completion_template_matches_chat_prompt(loaded: generation.LoadedModel) -> None:
    formatting = FormattingRecord(
        kind="prompt-completion", columns=("prompt", "completion"), prompt_template="{prompt}"
    )
    meta = dataclasses.replace(loaded.metadata, formatting=formatting)
    as_pc = dataclasses.replace(loaded, metadata=meta)
    tokenizer = loaded.tokenizer
    saved = tokenizer.chat_template
    try:
        set_chat_template(tokenizer, "prompt-completion", "{prompt}")
        rendered = tokenizer.apply_chat_template(
            messages(HISTORY, MESSAGE), add_generation_prompt=True, tokenize=False
        )
    finally:
        tokenizer.chat_template = saved
    assert rendered == generation.chat_prompt(HISTORY, MESSAGE, as_pc, max_new_tokens=8)
    assert rendered == (
        "What is the Sun? A star.<|endoftext|>How far is Mars? About 1.5 AU from the Sun.<|endoftext|>"
        "Is Pluto a planet?"
    )


def test_a_role_the_template_cannot_write_is_refused_in_one_sentence(loaded: generation.LoadedModel) -> None:
    tool = [*messages([], MESSAGE), {"role": "tool", "content": "42"}]
    with pytest.raises(TemplateError) as info:
        loaded.tokenizer.apply_chat_template(tool, tokenize=False)
    assert str(info.value) == (
        "This model was trained on prompts and replies only; its chat template cannot write a tool message."
    )


def test_odd_characters_in_a_prompt_template_survive_the_jinja_literal(
    loaded: generation.LoadedModel,
) -> None:
    odd = 'Q «"{prompt}"» \\ {% raw %} 😀\n\tA:'
    template = chat_template("qa", odd, "<|endoftext|>")
    assert template is not None
    rendered = loaded.tokenizer.apply_chat_template(
        messages([], "x"), chat_template=template, add_generation_prompt=True, tokenize=False
    )
    assert rendered == odd.replace("{prompt}", "x")


def test_plain_text_models_get_no_chat_template(home: Path) -> None:
    result = train(TrainConfig(DataSpec(str(KJV_TXT)), base="scratch", max_steps=1, block_size=64))
    folder = Path(result.path)
    assert ModelStore().get(folder.name).metadata.formatting.kind == "text"
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    assert not (folder / "chat_template.jinja").exists()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template is None
    with pytest.raises(ValueError, match="chat_template is not set"):
        tokenizer.apply_chat_template(messages([], MESSAGE), tokenize=False)


def test_an_inherited_template_is_removed_for_plain_text(loaded: generation.LoadedModel) -> None:
    tokenizer = loaded.tokenizer
    saved = tokenizer.chat_template
    try:
        assert set_chat_template(tokenizer, "text", None) is None
        assert tokenizer.chat_template is None
    finally:
        tokenizer.chat_template = saved
