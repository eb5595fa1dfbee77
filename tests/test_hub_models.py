"""A Hub id works wherever a model is named: generate and eval load it through the Hugging Face cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpt2tui.core.generation import HubModel, prompt_budget, resolve
from gpt2tui.core.models import build_scratch
from tests.conftest import QA_CSV, cli, cli_together

REPO = "gpt2tui-test/hub-tiny"


@pytest.fixture
def cached_hub_model(tmp_path: Path) -> Path:
    """A tiny model in the Hugging Face cache layout (models--OWNER--NAME/refs/main + snapshots/SHA), as a
    download would leave it; returns the snapshot folder."""
    model, tokenizer = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    repo = Path(os.environ["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("1" * 40)
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("1" * 40)
    return snapshot


def test_a_hub_id_is_resolved_only_when_nothing_local_has_the_name(tiny_model: str) -> None:
    assert not isinstance(resolve(tiny_model), HubModel)
    assert isinstance(resolve(REPO), HubModel) and isinstance(resolve("gpt2"), HubModel)


def test_generate_and_eval_take_a_hub_id_from_the_cache(cached_hub_model: Path) -> None:
    args = ["hello", "--strategy", "top-k", "--seed", "3", "--max-new-tokens", "8", "--json"]
    from_hub, from_folder, evaluated, evaluated_folder = cli_together(
        ("generate", REPO, *args),
        ("generate", str(cached_hub_model), *args),
        ("eval", REPO, str(QA_CSV), "--json"),
        ("eval", str(cached_hub_model), str(QA_CSV), "--json"),
    )
    assert from_hub.returncode == 0, from_hub.stderr
    assert json.loads(from_hub.stdout)["text"] == json.loads(from_folder.stdout)["text"]
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["loss"] == json.loads(evaluated_folder.stdout)["loss"]


def test_an_unknown_hub_id_offline_is_one_sentence(home: Path) -> None:
    run = cli("generate", "someone/missing", "hi")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == (
        "gpt2tui: Could not download 'someone/missing': the Hugging Face Hub cannot be reached and it is not "
        "in the local cache; offline, name a stored model ('gpt2tui models list') or a local save_pretrained "
        "folder.\n"
    )
    assert not (home / "models").exists()


@pytest.mark.parametrize(
    ("context", "max_new", "budget"),
    [(1024, 100, 924), (1024, 900, 512), (1024, 5000, 512), (7, 3, 4), (7, 100, 3)],
)
def test_the_prompt_keeps_half_the_context_or_more(context: int, max_new: int, budget: int) -> None:
    assert prompt_budget(context, max_new) == budget


def test_a_model_pushed_by_gpt2tui_comes_back_from_the_hub_with_its_template(
    tiny_model: str, home: Path
) -> None:
    """Pushed, then named by its Hub id: its gpt2tui.json (prompt template, stop text, block size) is read from
    the Hugging Face cache, so chat, generate and eval treat it as the stored model they came from."""
    import shutil

    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--alice--qa-tiny"
    snapshot = repo / "snapshots" / ("3" * 40)
    # What 'gpt2tui push' uploads (gpt2tui.json included), in the cache as a download leaves it.
    shutil.copytree(home / "models" / tiny_model, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("3" * 40)
    # As real processes: huggingface_hub reads HF_HOME when it is first imported.
    args = ["What is the largest planet?", "--strategy", "greedy", "--max-new-tokens", "12", "--json"]
    from_hub, from_store, *evaluations = cli_together(
        ("generate", "alice/qa-tiny", *args),
        ("generate", tiny_model, *args),
        *(("eval", ref, str(QA_CSV), "--json") for ref in ("alice/qa-tiny", tiny_model)),
    )
    assert from_hub.returncode == 0, from_hub.stderr
    assert json.loads(from_hub.stdout)["text"] == json.loads(from_store.stdout)["text"]
    evaluated = [json.loads(run.stdout) for run in evaluations]
    hub_eval, stored_eval = evaluated
    assert hub_eval["block_size"] == stored_eval["block_size"] and hub_eval["loss"] == stored_eval["loss"]
