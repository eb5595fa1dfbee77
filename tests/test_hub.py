"""``gpt2tui push``: against a fake Hugging Face Hub, a real HTTP server on loopback started by each test
(``tests/fake_hub.py``; there is no network here), with the CLI as a real process pointed at it through
HF_ENDPOINT. Every refusal is one sentence with exit 2 that changes nothing, locally or on the Hub, and the
token appears in no output, log or file."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt2tui.cli import main
from tests.conftest import CLOSED_ENDPOINT, cli
from tests.fake_hub import FakeHub, Repo, fake_hub

TOKEN = "hf_gpt2tuiTestTokenThatMustNeverLeak0123"
REPO = "alice/qa-tiny"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The fake Hub, with HF_ENDPOINT and HF_TOKEN pointing the CLI at it (Xet off: weights go by LFS)."""
    with fake_hub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        yield server


def contents(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the sha256 of its bytes: proves nothing was changed, not only resized."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_token_nowhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_push_uploads_the_model_folder_with_its_card(
    tiny_model: str, home: Path, hub: FakeHub, tmp_path: Path
) -> None:
    folder = home / "models" / tiny_model
    before = contents(home)
    run = cli("push", tiny_model, REPO)
    assert run.returncode == 0, run.stderr
    repo = hub.repos[REPO]
    local = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert run.stdout == (
        f"pushed tiny to {hub.url}/{REPO} (a new private repository; {len(local)} files, "
        f"commit {repo.commits[0][:8]})\n"
    )
    assert run.stderr == ""
    assert repo.private is True  # private by default
    assert repo.files == local  # every file, byte for byte: weights, tokenizer, config, card, metadata
    assert {"model.safetensors", "README.md", "gpt2tui.json", "tokenizer.json"} <= set(repo.files)
    assert "model-index:" in repo.files["README.md"].decode()
    uploaded = json.loads(repo.files["tokenizer_config.json"])  # a Q/A model: its chat template goes along
    assert uploaded["chat_template"].startswith("{%- for message in messages -%}")
    assert '"Question: "' in uploaded["chat_template"]
    weights = hashlib.sha256(local["model.safetensors"]).hexdigest()
    assert hub.lfs == {weights: local["model.safetensors"]}  # the weights travelled as an LFS object
    for request in hub.requests:
        if request.path.startswith("/lfs-upload/"):
            assert "authorization" not in request.headers  # storage uploads never carry the token
        elif request.method == "POST" or request.path.startswith("/api/models/alice"):
            assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert contents(home) == before  # the model folder (and everything else here) is untouched
    assert_token_nowhere(tmp_path, run.stdout, run.stderr)

    again = cli("push", tiny_model, REPO, "--json")  # into the existing repository: a second commit
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result == {
        "model": "tiny",
        "repo_id": REPO,
        "url": f"{hub.url}/{REPO}",
        "private": True,
        "created": False,
        "files": sorted(local),
        "commit": repo.commits[1],
    }


def test_public_makes_a_public_repository(tiny_model: str, hub: FakeHub) -> None:
    run = cli("push", tiny_model, REPO, "--public")
    assert run.returncode == 0, run.stderr
    assert "(a new public repository;" in run.stdout
    assert hub.repos[REPO].private is False


def test_the_saved_login_is_used_when_hf_token_is_unset(
    tiny_model: str, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    token_file = tmp_path / "hf" / "token"  # where 'hf auth login' saves it (HF_HOME is tmp_path/hf)
    token_file.parent.mkdir(parents=True)
    token_file.write_text(TOKEN)
    run = cli("push", tiny_model, REPO)
    assert run.returncode == 0, run.stderr
    assert hub.repos[REPO].files
    assert TOKEN not in run.stdout + run.stderr
    assert token_file.read_text() == TOKEN  # the login is the user's; it is left as it was


def refused(*args: str) -> tuple[str, str]:
    run = cli(*args)
    assert run.returncode == 2
    assert run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1
    return run.stderr, run.stdout


def test_no_token_is_one_sentence_and_nothing_is_sent(
    tiny_model: str, home: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    before = contents(home)
    err, _ = refused("push", tiny_model, REPO)
    assert err == (
        "gpt2tui: No Hugging Face token was found; set HF_TOKEN or log in with 'hf auth login', then push again.\n"
    )
    assert hub.requests == [] and hub.repos == {}
    assert contents(home) == before


def test_an_unreachable_hub_is_one_sentence_within_seconds(
    tiny_model: str, home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", CLOSED_ENDPOINT)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    before = contents(home)
    started = time.monotonic()
    err, _ = refused("push", tiny_model, REPO)
    assert time.monotonic() - started < 30  # the 3-second probe, not the HTTP client's retries
    assert err == (
        f"gpt2tui: The Hugging Face Hub ({CLOSED_ENDPOINT}) cannot be reached; check the network and push "
        "again (nothing was uploaded).\n"
    )
    assert contents(home) == before
    assert_token_nowhere(tmp_path, err)


def test_hub_offline_mode_is_one_sentence(
    tiny_model: str, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err, _ = refused("push", tiny_model, REPO)
    assert err == "gpt2tui: HF_HUB_OFFLINE is set, so nothing can be pushed; unset it and push again.\n"
    assert hub.requests == []


def test_a_rejected_token_is_one_sentence_without_the_token(
    tiny_model: str, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = "hf_wrongTokenAlsoNeverPrinted987654321"
    monkeypatch.setenv("HF_TOKEN", wrong)
    err, out = refused("push", tiny_model, REPO)
    assert err == (
        "gpt2tui: The Hugging Face Hub refused the token (401 Unauthorized); set HF_TOKEN or log in with "
        "'hf auth login' with a valid token (nothing was uploaded).\n"
    )
    assert wrong not in err + out and hub.repos == {}


def test_the_default_never_uploads_into_an_existing_public_repository(tiny_model: str, hub: FakeHub) -> None:
    hub.repos[REPO] = Repo(private=False)
    err, _ = refused("push", tiny_model, REPO)
    assert err == (
        f"gpt2tui: The repository {REPO} already exists and is public; push with --public to upload to it, "
        "or choose another repository (nothing was uploaded).\n"
    )
    assert hub.repos[REPO].files == {} and not any("/commit/" in r.path for r in hub.requests)


def test_a_failed_commit_says_the_repository_was_created_but_holds_nothing(
    tiny_model: str, hub: FakeHub
) -> None:
    hub.fail_commit = 500
    err, _ = refused("push", tiny_model, REPO)
    assert err == (
        f"gpt2tui: The Hugging Face Hub answered HTTP 500 while pushing to {REPO} (the repository {REPO} was "
        "created but holds none of the files (the upload is one commit); push again).\n"
    )
    assert hub.repos[REPO].files == {}


@pytest.mark.parametrize(
    "bad",
    ["qa-tiny", "alice/qa/tiny", "-alice/qa", "alice/qa-", "alice/qa--tiny", "alice/.qa", "alice/qa..x", "/qa",
     "alice/", "alice/" + "x" * 97, "al ice/qa", "alice/qa\n"],
)  # fmt: skip
def test_a_wrong_repository_id_is_one_sentence(
    bad: str, tiny_model: str, home: Path, hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    before = contents(home)
    assert main(["push", tiny_model, "--", bad]) == 2
    captured = capsys.readouterr()
    shown = bad.replace("\n", "\\n")
    assert captured.err == (
        f"gpt2tui: '{shown}' is not a Hugging Face repository id; use OWNER/NAME, each of letters, digits, '-', "
        "'_' or '.', at most 96 characters, starting and ending with a letter or digit (for example "
        "alice/qa-tiny).\n"
    )
    assert captured.out == "" and hub.requests == [] and contents(home) == before


def test_a_missing_model_is_one_sentence(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "ghost", REPO]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: No stored model named 'ghost'; 'gpt2tui models list' shows the stored models.\n"
    )
    assert hub.requests == []


def test_a_model_without_safetensors_is_refused(
    tiny_model: str, home: Path, hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = home / "models" / tiny_model
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    before = contents(home)
    assert main(["push", tiny_model, REPO]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: The model folder 'tiny' is broken (its weights are a pickle (.bin), and gpt2tui loads only "
        ".safetensors); remove it with 'gpt2tui models rm tiny'.\n"
    )
    assert hub.requests == [] and contents(home) == before


def test_pickles_and_hidden_files_stay_behind(tiny_model: str, home: Path, hub: FakeHub) -> None:
    folder = home / "models" / tiny_model
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / ".gpt2tui.json.123.tmp").write_text("staged")
    run = cli("push", tiny_model, REPO)
    assert run.returncode == 0, run.stderr
    assert "pytorch_model.bin" not in hub.repos[REPO].files
    assert not any(name.startswith(".") for name in hub.repos[REPO].files)


def test_the_token_is_never_logged_even_at_debug_level(
    tiny_model: str, home: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In-process, as the TUI would push: library logs go to the TUI's log file, every logger at DEBUG."""
    from huggingface_hub import constants

    from gpt2tui.core.hub import push_model
    from gpt2tui.core.quiet import route_library_logs

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # read at import; the env var is too late here
    log_file = tmp_path / "gpt2tui.log"
    route_library_logs(log_file)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    keep = Keep(logging.DEBUG)
    keep.setFormatter(logging.Formatter("%(name)s %(message)s %(args)s"))
    names = ["", "huggingface_hub", "httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "gpt2tui"]
    saved = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(keep)
        result = push_model(tiny_model, REPO)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).removeHandler(keep)
        route_library_logs(None)
    assert result.created and hub.repos[REPO].files
    assert records  # the libraries did log (so the check below could fail)
    assert not any(TOKEN in record for record in records)
    assert TOKEN not in log_file.read_text()
    assert_token_nowhere(tmp_path)


def test_help_lists_push_and_its_private_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "push" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--private a new repository is private (default)" in text
