"""The decoding grid and two models side by side: fixed seeds, identical on every run, figures per reply."""

from __future__ import annotations

import json
from pathlib import Path

from gpt2tui.core.compare import GRID, grid_settings, reply_cell
from gpt2tui.core.generation import GenerationSettings, load
from tests.conftest import cli, cli_together, tree_snapshot


def test_the_grid_is_the_same_on_every_run_and_each_cell_alone(tiny_model: str) -> None:
    args = ["compare-decoding", tiny_model, "What is the Sun?", "--max-new-tokens", "10", "--threads", "1"]
    first, second, plain = cli_together((*args, "--json"), (*args, "--json"), tuple(args))
    assert first.returncode == 0, first.stderr
    cells = json.loads(first.stdout)
    again = json.loads(second.stdout)
    steady = ("label", "settings", "seed", "text", "new_tokens", "distinct_2", "mean_token_logprob")
    assert [{k: c[k] for k in steady} for c in again] == [{k: c[k] for k in steady} for c in cells]
    assert [c["label"] for c in cells] == [label for label, _ in GRID]
    assert {c["seed"] for c in cells} == {0}
    assert cells[1]["mean_token_logprob"] is None and cells[0]["mean_token_logprob"] < 0  # beam keeps no draw
    # A cell's reply does not depend on the cells before it: the last cell, generated alone, is the same.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CLI's summation order
    try:
        label, settings = grid_settings(GenerationSettings(max_new_tokens=10, seed=0))[-1]
        alone = reply_cell(label, load(tiny_model), "What is the Sun?", settings)
    finally:
        torch.set_num_threads(threads)
    assert (alone.label, alone.text) == (cells[-1]["label"], cells[-1]["text"])
    text = plain.stdout
    assert text.startswith("── greedy (tiny) · greedy max=10 · seed 0 · ") and "── top-p T=1.2 (tiny)" in text


def test_two_models_get_the_same_prompt_settings_and_seed(tiny_model: str, home: Path) -> None:
    import shutil

    shutil.copytree(home / "models" / tiny_model, home / "models" / "twin")
    run = cli("compare", tiny_model, "twin", "Why?", "--max-new-tokens", "8", "--strategy", "top-k", "--json")
    assert run.returncode == 0, run.stderr
    a, b = json.loads(run.stdout)
    assert (a["label"], a["model"], b["label"], b["model"]) == ("A", "tiny", "B", "twin")
    assert a["text"] == b["text"] and a["seed"] == b["seed"] == 0 and a["settings"] == b["settings"]


def test_an_unknown_second_model_is_refused_before_either_loads(tiny_model: str, home: Path) -> None:
    before = tree_snapshot(home)
    run = cli("compare", tiny_model, "./nowhere", "Why?")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == (
        "gpt2tui: No stored model named './nowhere' and no folder at that path; 'gpt2tui models list' shows "
        "the stored models.\n"
    )
    assert tree_snapshot(home) == before
