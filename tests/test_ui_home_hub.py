"""Pilot tests of the home screen's push to the Hugging Face Hub and its stored evaluations.

The push goes through the real core against a fake Hub, a real HTTP server on loopback started by each test
(``tests/fake_hub.py``; there is no network here). Every refusal shows the core's one sentence, and the token
appears in no file the app writes (its log included).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, Static

from gpt2tui.core.card import EvaluationRecord
from gpt2tui.core.store import ModelStore
from gpt2tui.ui.screens.home import HomeScreen
from gpt2tui.ui.widgets.dialogs import PushDialog
from tests.conftest import CLOSED_ENDPOINT
from tests.fake_hub import FakeHub, Repo, fake_hub
from tests.test_ui_app import SIZE, SMALL, command, make_app, record_notes, text_of, wait_for

TOKEN = "hf_gpt2tuiHomeScreenTokenNeverShown0123"
REPO = "alice/tiny"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, with HF_ENDPOINT and HF_TOKEN pointing the app at it (Xet off: weights go by LFS)."""
    from huggingface_hub import constants

    with fake_hub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # read at import: the env var is too late
        yield server


def assert_token_nowhere(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def push_note(app: object) -> Static:
    return app.screen.query_one("#push-note", Static)  # type: ignore[attr-defined]


async def ask_push(pilot, app, repo_id: str | None = None) -> PushDialog:  # type: ignore[no-untyped-def]
    await pilot.press("p")
    assert isinstance(app.screen, PushDialog)
    if repo_id is not None:
        app.screen.query_one("#repo-id", Input).value = repo_id
    return app.screen


async def push_ended(pilot, app) -> str:  # type: ignore[no-untyped-def]
    """Wait until the push note says how the push ended; return what it says."""
    await wait_for(pilot, lambda: not text_of(push_note(app)).startswith("Pushing"), "the push to end")
    return text_of(push_note(app))


async def test_p_pushes_the_highlighted_model_privately_with_progress_in_place(
    tiny_model: str, home: Path, hub: FakeHub, tmp_path: Path
) -> None:
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dialog = await ask_push(pilot, app)
        repo_id = dialog.query_one("#repo-id", Input)
        # The user's Hub name would need the network: the model's name is offered, the cursor where OWNER/ goes.
        assert repo_id.value == "tiny" and repo_id.cursor_position == 0
        await pilot.press(*"alice/", "enter")
        assert isinstance(app.screen, HomeScreen)
        assert text_of(push_note(app)).startswith("Pushing tiny to alice/tiny (private)… ")
        outcome = await push_ended(pilot, app)
        repo = hub.repos[REPO]
        local = {p.name: p.read_bytes() for p in (home / "models" / tiny_model).iterdir()}
        assert outcome == (
            f"Pushed tiny to {hub.url}/{REPO} (a new private repository; {len(local)} files, "
            f"commit {repo.commits[0][:8]})."
        )
        assert push_note(app).has_class("done")
        assert notes == [f"Pushed tiny to {REPO}."]
        assert repo.private is True and repo.files == local
        assert json.loads(repo.files["tokenizer_config.json"])["chat_template"]  # a Q/A model: its template

        dialog = await ask_push(pilot, app)  # the same model again: the last target is offered
        assert dialog.query_one("#repo-id", Input).value == REPO
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen) and len(repo.commits) == 1

    shutil.copytree(home / "models" / tiny_model, home / "models" / "other")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert app.screen.selected_name() == "tiny"  # same date: listed by name, newest first
        await ask_push(pilot, app, "alice/tiny-2")
        await pilot.press("enter")
        assert (await push_ended(pilot, app)).startswith("Pushed tiny to ")
        await pilot.press("down")
        assert app.screen.selected_name() == "other"
        dialog = await ask_push(pilot, app)  # the owner of this session's last push is offered
        repo_id = dialog.query_one("#repo-id", Input)
        assert repo_id.value == "alice/other" and repo_id.cursor_position == len(repo_id.value)
    assert_token_nowhere(tmp_path)  # the app's log file included


async def test_a_bad_repository_id_is_refused_in_the_dialog(tiny_model: str, hub: FakeHub) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dialog = await ask_push(pilot, app)
        await pilot.press("enter")  # "tiny": no owner
        assert app.screen is dialog
        assert text_of(dialog.query_one("#error", Static)) == (
            "'tiny' is not a Hugging Face repository id; use OWNER/NAME, each of letters, digits, '-', '_' or "
            "'.', at most 96 characters, starting and ending with a letter or digit (for example alice/qa-tiny)."
        )
        await pilot.click("#cancel")
        assert isinstance(app.screen, HomeScreen)
        assert not push_note(app).display  # nothing was pushed, so nothing to say
    assert hub.requests == [] and hub.repos == {}


async def test_no_token_is_the_core_sentence_and_nothing_is_sent(
    tiny_model: str, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await ask_push(pilot, app, REPO)
        await pilot.press("enter")
        expected = (
            "No Hugging Face token was found; set HF_TOKEN or log in with 'hf auth login', then push again."
        )
        assert await push_ended(pilot, app) == expected
        assert push_note(app).has_class("error") and notes == [expected]
    assert hub.requests == [] and hub.repos == {}


async def test_an_unreachable_hub_is_the_core_sentence(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_ENDPOINT)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await ask_push(pilot, app, REPO)
        await pilot.press("enter")
        assert await push_ended(pilot, app) == (
            f"The Hugging Face Hub ({CLOSED_ENDPOINT}) cannot be reached; check the network and push again "
            "(nothing was uploaded)."
        )
    assert_token_nowhere(tmp_path)


async def test_an_existing_public_repository_needs_public_chosen(tiny_model: str, hub: FakeHub) -> None:
    hub.repos[REPO] = Repo(private=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await ask_push(pilot, app, REPO)
        await pilot.press("enter")  # private, the default
        assert await push_ended(pilot, app) == (
            f"The repository {REPO} already exists and is public; press p again and choose public to upload to "
            "it, or choose another repository (nothing was uploaded)."
        )
        assert hub.repos[REPO].files == {}
        await ask_push(pilot, app)  # offered again as it was asked
        await pilot.click("#public")
        await pilot.click("#push")
        outcome = await push_ended(pilot, app)
        assert outcome == (
            f"Pushed tiny to {hub.url}/{REPO} (an existing public repository; {len(hub.repos[REPO].files)} "
            f"files, commit {hub.repos[REPO].commits[0][:8]})."
        )


async def test_push_is_a_key_of_the_models_and_in_the_palette(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        push = command(app, "Push to Hub")
        assert push is not None and push.help == "key p · models and runs"
        await pilot.press("ctrl+p", *"Push to Hub")
        await wait_for(  # the palette searches in the background
            pilot,
            lambda: bool(app.screen.query(OptionList)) and app.screen.query_one(OptionList).option_count > 0,
            "the palette's matches",
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PushDialog), "the push dialog")


async def test_push_is_not_offered_without_models() -> None:
    app = make_app()
    notes = record_notes(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert command(app, "Push to Hub") is None
        await pilot.press("p")
        assert isinstance(app.screen, HomeScreen) and not notes


# ------------------------------------------------------------------------------------------ evaluations

EVALUATED = EvaluationRecord(
    created="2025-03-01T09:30:00+00:00",
    dataset="qa.csv",
    dataset_sha256="ab" * 32,
    block_size=64,
    blocks=12,
    tokens=768,
    loss=2.125,
    perplexity=8.372,
    seed=0,
    decoding={"strategy": "top-k", "top_k": 40},
    replies=20,
    references=20,
    distinct_1=0.4123,
    distinct_2=0.7712,
    repeated_4gram_rate=0.02,
    mean_reply_tokens=17.25,
    mean_token_logprob=-1.2345,
    reply_perplexity=3.4368,
    rouge_l=0.3104,
    token_f1=0.2815,
)


async def test_the_models_show_their_stored_evaluations(tiny_model: str) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert str(table.get_row(tiny_model)[5]) == "-"
        details = app.screen.query_one("#model-details", Static)
        assert text_of(details) == "tiny: no stored evaluations; 'gpt2tui eval tiny FILE' measures one."

    ModelStore().record_evaluation(tiny_model, EVALUATED)
    ModelStore().record_evaluation(
        tiny_model, EvaluationRecord(dataset="other.txt", dataset_sha256="cd" * 32)
    )
    ModelStore().record_evaluation(tiny_model, EVALUATED)  # the same measurement: it becomes the latest
    from datetime import datetime

    when = datetime.fromisoformat(EVALUATED.created or "").astimezone().strftime("%Y-%m-%d %H:%M")
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert str(table.get_row(tiny_model)[5]) == "8.37 (qa.csv)"
        assert text_of(app.screen.query_one("#model-details", Static)) == (
            f"tiny, latest evaluation (1 earlier: 'gpt2tui models show tiny'): {when} on qa.csv (12 blocks): "
            "loss 2.1250, perplexity 8.37\n"
            "20 replies: distinct-1 0.412, distinct-2 0.771, repeated 4-grams 0.020, mean length 17.2, "
            "mean token log-prob -1.234, reply perplexity 3.44, ROUGE-L 0.310, token F1 0.281"
        )
