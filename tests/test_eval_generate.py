"""eval --generate N: replies to held-out prompts of the file, scored, deterministic, stored with the model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from gpt2tui.core.data import DataSpec
from gpt2tui.core.evaluation import held_out_prompts
from gpt2tui.core.generation import load
from gpt2tui.core.packing import Source, pack, split
from tests.conftest import KJV_TXT, QA_CSV, cli, tree_snapshot


def test_qa_prompts_come_from_held_out_blocks_with_their_answers(tiny_model: str) -> None:
    loaded = load(tiny_model)
    packed = pack(Source(DataSpec(str(QA_CSV))), loaded.tokenizer)
    hyper = loaded.metadata.hyperparameters
    prompts = held_out_prompts(loaded, packed, 50, seed=0, max_new_tokens=40)
    held = split(packed, hyper["block_size"], hyper["eval_split"], hyper["seed"]).eval
    held_text = "".join(loaded.tokenizer.decode(packed.blocks(hyper["block_size"])[i]) for i in held)
    answers = {row["question"].strip(): row["answer"].strip() for row in csv.DictReader(QA_CSV.open())}
    assert prompts and len(prompts) < len(answers)  # only the held-out rows, not the whole file
    for item in prompts:
        assert f"Question: {item.prompt}\nAnswer:" in held_text
        assert item.reference == answers[item.prompt]
    assert held_out_prompts(loaded, packed, 50, seed=0, max_new_tokens=40) == prompts  # the seed decides


def test_a_passage_gives_its_beginning_and_what_followed(tiny_model: str) -> None:
    loaded = load(tiny_model)
    packed = pack(Source(DataSpec(str(KJV_TXT))), loaded.tokenizer)
    prompts = held_out_prompts(loaded, packed, 3, seed=1, max_new_tokens=16)
    text = KJV_TXT.read_text()
    assert len(prompts) == 3
    for item in prompts:
        assert item.reference is not None
        assert f"{item.prompt}{item.reference}" in text  # the passage as it reads in the file


def test_coherence_is_the_replies_log_probability_under_the_model(tiny_model: str) -> None:
    """Sampling at T 0.8 with top-p reshapes the distribution; coherence must be the model's own figure."""
    import math

    import torch

    from gpt2tui.core.evaluation import score_replies
    from gpt2tui.core.generation import GenerationSettings, stream

    loaded = load(tiny_model)
    packed = pack(Source(DataSpec(str(QA_CSV))), loaded.tokenizer)
    settings = GenerationSettings(seed=0, max_new_tokens=20)  # top-p, T 0.8: the eval default
    metrics = score_replies(loaded, packed, 5, settings)
    expected = []
    for item in held_out_prompts(loaded, packed, 5, 0, settings.max_new_tokens):
        reply_stream = stream(
            loaded.model, loaded.tokenizer, item.prompt, settings, template=loaded.template,
            stop_text=loaded.stop_text,
        )  # fmt: skip
        text = "".join(reply_stream)
        tokens = [t for t, _ in reply_stream.reply.tokens]
        kept = next(
            (n for n in range(len(tokens) + 1)
             if len(loaded.tokenizer.decode(tokens[:n], skip_special_tokens=True)) >= len(text)),
            len(tokens),
        )  # fmt: skip
        ids = loaded.tokenizer(loaded.template.format(prompt=item.prompt), add_special_tokens=False)[
            "input_ids"
        ]
        with torch.inference_mode():
            logits = loaded.model(torch.tensor([ids + tokens])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        expected += [float(logprobs[len(ids) - 1 + i, t]) for i, t in enumerate(tokens[:kept])]
    assert expected and metrics.mean_token_logprob is not None
    assert math.isclose(metrics.mean_token_logprob, sum(expected) / len(expected), rel_tol=1e-4)


def test_scores_are_deterministic_and_stored_with_the_model(tiny_model: str, home: Path) -> None:
    # The same thread count: the same summation order, so the log-probabilities agree to the last bit.
    args = [
        "eval",
        tiny_model,
        str(QA_CSV),
        "--generate",
        "4",
        "--max-new-tokens",
        "12",
        "--threads",
        "1",
        "--json",
    ]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    second = json.loads(cli(*args).stdout)
    result = json.loads(first.stdout)
    assert result["generation"] == second["generation"] and result["seed"] == 0
    figures = result["generation"]
    assert figures["replies"] == 4 and figures["references"] == 4
    assert 0 <= figures["distinct_1"] <= 1 and figures["mean_token_logprob"] < 0
    assert result["decoding"] == {
        "strategy": "top-p",
        "max_new_tokens": 12,
        "temperature": 0.8,
        "top_p": 0.95,
    }
    shown = json.loads(cli("models", "show", tiny_model, "--json").stdout)
    (record,) = [e for e in shown["evaluations"] if e.get("replies")]  # run twice, stored once
    assert record["distinct_2"] == figures["distinct_2"] and record["seed"] == 0
    assert record["decoding"] == result["decoding"]


def test_asking_for_more_prompts_than_rows_says_how_many_were_scored(tiny_model: str, home: Path) -> None:
    args = ["eval", tiny_model, str(QA_CSV), "--generate", "1000", "--max-new-tokens", "2", "--json"]
    run = cli(*args)
    assert run.returncode == 0, run.stderr
    scored = json.loads(run.stdout)["generation"]["replies"]
    assert 0 < scored < 1000
    sentence = (
        f"{scored} replies scored, not 1000: the file has only {scored} rows the model did not train on.\n"
    )
    assert run.stderr.endswith(sentence)


def test_a_negative_count_is_one_sentence(tiny_model: str, home: Path) -> None:
    before = tree_snapshot(home / "models")
    run = cli("eval", tiny_model, str(QA_CSV), "--generate", "-1")
    assert run.returncode == 2 and run.stderr == "gpt2tui: --generate must be 0 or more, not -1.\n"
    assert tree_snapshot(home / "models") == before
