"""Evaluation results stored with the model: typed records, old files still readable, atomic writes, the
card's model-index as the Hub reads it, and ``gpt2tui eval`` / ``models show`` end to end."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest

from gpt2tui.cli import main
from gpt2tui.core.card import (
    MAX_EVALUATIONS,
    SCHEMA_VERSION,
    DatasetRecord,
    EvaluationRecord,
    ModelMetadata,
    model_card,
)
from gpt2tui.core.errors import UserError
from gpt2tui.core.store import CARD_FILE, META_FILE, ModelStore
from tests.conftest import QA_CSV, tree_snapshot

GENERATED = EvaluationRecord(
    created="2026-03-01T10:00:00+00:00",
    dataset="qa.csv",
    dataset_sha256="ab" * 32,
    block_size=128,
    blocks=19,
    tokens=2432,
    loss=2.5,
    perplexity=12.18,
    seed=0,
    decoding={"strategy": "greedy"},
    replies=20,
    references=20,
    distinct_1=0.4,
    distinct_2=0.7,
    repeated_4gram_rate=0.1,
    mean_reply_tokens=12.5,
    mean_token_logprob=-1.2,
    reply_perplexity=3.32,
    rouge_l=0.31,
    token_f1=0.42,
)


def version_2_file() -> dict[str, object]:
    """What gpt2tui wrote before evaluations were stored (schema 2): no ``evaluations`` key."""
    return {
        "schema_version": 2,
        "name": "old",
        "base": "scratch",
        "created": "2026-01-01T00:00:00+00:00",
        "dataset": {"path": "/data/qa.csv", "sha256": "cd" * 32},
        "perplexity_before": 800.0,
        "perplexity_after": 500.0,
    }


def test_a_version_2_file_reads_with_no_evaluations() -> None:
    meta = ModelMetadata.from_dict(version_2_file())
    assert meta.evaluations == () and meta.problems == ()
    assert meta.schema_version == 2 and meta.perplexity_after == 500.0


def test_records_round_trip_through_json() -> None:
    meta = ModelMetadata(name="m", evaluations=(GENERATED,))
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["schema_version"] == SCHEMA_VERSION == 3
    assert data["evaluations"][0]["rouge_l"] == 0.31
    assert ModelMetadata.from_dict(data) == meta


def test_a_damaged_record_is_dropped_and_named_and_the_others_stay() -> None:
    good = {"dataset": "qa.csv", "perplexity": 12}
    meta = ModelMetadata.from_dict(
        {"evaluations": ["nonsense", good, {"dataset": "b.txt", "perplexity": "high", "loss": 2.0}]}
    )
    assert meta.problems == ("evaluations[0]", "evaluations[2].perplexity")
    assert [(r.dataset, r.perplexity, r.loss) for r in meta.evaluations] == [
        ("qa.csv", 12.0, None),
        ("b.txt", None, 2.0),
    ]
    assert ModelMetadata.from_dict({"evaluations": {"not": "a list"}}).problems == ("evaluations",)


def test_the_same_measurement_is_replaced_and_the_list_is_bounded() -> None:
    first = EvaluationRecord(dataset="qa.csv", dataset_sha256="a", block_size=128, perplexity=10.0)
    again = EvaluationRecord(dataset="qa.csv", dataset_sha256="a", block_size=128, perplexity=9.0)
    other = EvaluationRecord(dataset="qa.csv", dataset_sha256="a", block_size=64, perplexity=11.0)
    meta = (
        ModelMetadata(schema_version=2).with_evaluation(first).with_evaluation(other).with_evaluation(again)
    )
    assert meta.evaluations == (other, again) and meta.schema_version == SCHEMA_VERSION
    for n in range(MAX_EVALUATIONS + 5):
        meta = meta.with_evaluation(EvaluationRecord(dataset_sha256=str(n)))
    assert len(meta.evaluations) == MAX_EVALUATIONS
    assert meta.evaluations[-1].dataset_sha256 == str(MAX_EVALUATIONS + 4)  # the newest kept, the oldest gone


def test_the_card_has_a_model_index_the_hub_reads() -> None:
    from huggingface_hub import ModelCard

    meta = ModelMetadata(
        name="qa-tiny",
        perplexity_after=583.78,
        dataset=DatasetRecord(path="/data/qa.csv"),
        evaluations=(GENERATED,),
    )
    card = ModelCard(model_card(meta))
    assert card.data.model_name == "qa-tiny"
    results = [
        (r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_name, r.metric_value)
        for r in card.data.eval_results
    ]
    assert results[0] == (
        "text-generation",
        "qa.csv",
        "qa.csv (held-out blocks)",
        "perplexity",
        "Held-out perplexity after fine-tuning",
        583.78,
    )
    assert results[1:] == [
        ("text-generation", "qa.csv", "qa.csv (every block)", kind, name, value)
        for kind, name, value in [
            ("perplexity", "Perplexity", 12.18),
            ("distinct-1", "Distinct-1", 0.4),
            ("distinct-2", "Distinct-2", 0.7),
            ("repeated-4gram-rate", "Repeated 4-gram rate", 0.1),
            ("mean-reply-tokens", "Mean reply length (tokens)", 12.5),
            ("mean-token-logprob", "Mean token log-probability", -1.2),
            ("reply-perplexity", "Reply perplexity", 3.32),
            ("rouge", "ROUGE-L", 0.31),
            ("f1", "Token F1", 0.42),
        ]
    ]
    assert "| 2026-03-01 10:00 | `qa.csv` | 19 x 128 | 2.5000 | 12.18 |" in str(card)


def test_unknown_and_infinite_figures_stay_out_of_the_model_index() -> None:
    from huggingface_hub import ModelCard

    nothing = ModelCard(model_card(ModelMetadata(name="m")))
    assert "model-index" not in nothing.data.to_dict() and "## Evaluations" not in str(nothing)
    diverged = ModelMetadata(
        name="m",
        perplexity_after=math.inf,
        dataset=DatasetRecord(path="/d/x.txt"),
        evaluations=(EvaluationRecord(dataset="x.txt", loss=3.0, perplexity=None),),
    )
    assert "model-index" not in model_card(diverged)
    assert "| unknown |" in model_card(diverged)  # the table still says what is not known


# ------------------------------------------------------------------------------------------------ the store


def plain_model(store: ModelStore, name: str, metadata: dict[str, object] | None) -> Path:
    folder = store.root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    if metadata is not None:
        (folder / META_FILE).write_text(json.dumps(metadata))
    return folder


def test_recording_merges_into_the_file_and_keeps_what_this_version_cannot_read(home: Path) -> None:
    store = ModelStore()
    old = {**version_2_file(), "steps": "many", "from_a_newer_gpt2tui": {"x": 1}}
    folder = plain_model(store, "old", old)
    info = store.record_evaluation("old", GENERATED)
    stored = json.loads((folder / META_FILE).read_text())
    assert stored["steps"] == "many" and stored["from_a_newer_gpt2tui"] == {"x": 1}  # nothing lost
    assert stored["schema_version"] == SCHEMA_VERSION and stored["perplexity_after"] == 500.0
    assert stored["evaluations"] == [
        json.loads(json.dumps(ModelMetadata(evaluations=(GENERATED,)).to_dict()))["evaluations"][0]
    ]
    assert info.metadata.evaluations == (GENERATED,)
    card = (folder / CARD_FILE).read_text()
    assert "# old\n" in card and 'type: "rouge"' in card
    assert sorted(p.name for p in folder.iterdir()) == [
        CARD_FILE,
        "config.json",
        META_FILE,
        "model.safetensors",
    ]


def test_recording_into_a_plain_folder_starts_its_metadata(home: Path) -> None:
    store = ModelStore()
    folder = plain_model(store, "plain", None)
    store.record_evaluation("plain", GENERATED)
    stored = json.loads((folder / META_FILE).read_text())
    assert stored["name"] == "plain" and len(stored["evaluations"]) == 1


def test_a_full_disk_while_recording_leaves_both_files_as_they_were(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore()
    folder = plain_model(store, "m", version_2_file())
    (folder / CARD_FILE).write_text("the old card")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_replace = os.replace

    def no_space(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(UserError) as info:
        store.record_evaluation("m", GENERATED)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (
        str(info.value)
        == "Could not store the evaluation with m: the disk is full; free some space and try again."
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no change, no staged leftovers


def test_an_unreadable_metadata_file_is_refused_and_left_alone(home: Path) -> None:
    store = ModelStore()
    folder = plain_model(store, "m", None)
    (folder / META_FILE).write_text("{not json")
    before = tree_snapshot(store.root)
    with pytest.raises(UserError) as info:
        store.record_evaluation("m", GENERATED)
    assert str(info.value) == (
        "Could not store the evaluation with m: its gpt2tui.json is not a readable JSON object; "
        "repair that file and evaluate again."
    )
    assert tree_snapshot(store.root) == before and (folder / META_FILE).read_text() == "{not json"


# -------------------------------------------------------------------------------------------------- the CLI


def test_eval_stores_its_result_and_models_show_prints_it(tiny_model: str, home: Path, capsys) -> None:
    assert main(["eval", tiny_model, str(QA_CSV), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stored_with"] == "tiny"
    assert main(["models", "show", "tiny", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (record,) = shown["evaluations"]
    assert record["perplexity"] == result["perplexity"] and record["loss"] == result["loss"]
    assert record["dataset"] == "qa.csv" and record["dataset_path"] == str(QA_CSV)
    assert record["blocks"] == result["blocks"] and record["block_size"] == result["block_size"]
    assert record["dataset_sha256"] == result["dataset_sha256"] and record["created"]
    assert main(["models", "show", "tiny"]) == 0
    assert '"evaluations": [' in capsys.readouterr().out  # the readable form prints them too

    assert main(["eval", tiny_model, str(QA_CSV)]) == 0  # the same measurement again: replaced, not added
    assert capsys.readouterr().out.splitlines()[-1] == "stored with the model: gpt2tui models show tiny"
    meta = ModelStore().get("tiny").metadata
    assert len(meta.evaluations) == 1
    card = (home / "models" / "tiny" / CARD_FILE).read_text()
    assert f"value: {json.dumps(meta.evaluations[0].perplexity)}" in card


def test_eval_of_a_folder_path_writes_nothing_there(tiny_model: str, home: Path, capsys) -> None:
    folder = home / "models" / tiny_model
    before = tree_snapshot(home / "models")
    assert main(["eval", str(folder), str(QA_CSV), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored_with"] is None
    assert tree_snapshot(home / "models") == before  # (the token cache under home/cache may fill)


def test_a_trained_models_card_reports_its_held_out_perplexity(tiny_model: str, home: Path) -> None:
    from huggingface_hub import ModelCard

    meta = ModelStore().get(tiny_model).metadata
    card = ModelCard((home / "models" / tiny_model / CARD_FILE).read_text())
    (result,) = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.metric_type, result.metric_value) == (
        "text-generation",
        "qa.csv",
        "perplexity",
        meta.perplexity_after,
    )
