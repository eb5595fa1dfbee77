"""One bad model folder never hides the others; the store's file-system faults are one sentence each."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2tui.cli import NO_TERMINAL, main
from gpt2tui.core.card import ModelMetadata
from gpt2tui.core.store import CARD_FILE, META_FILE, ModelStore
from tests.conftest import QA_CSV, cli, tree_snapshot

gpt2tui = cli


def spoil(folder: Path, **fields: object) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(fields)
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.fixture
def two_models(tiny_model: str, home: Path) -> tuple[Path, Path]:
    good, bad = home / "models" / "tiny", home / "models" / "odd"
    shutil.copytree(good, bad)
    return good, bad


BAD_FIELDS = [
    {"dataset": "qa.csv", "perplexity_before": "high"},
    {"created": "9999-12-31T23:59:59-12:00"},
    {"formatting": {"prompt_template": "{oops} {prompt}", "stop_text": 7, "kind": "qa", "columns": []}},
    {"block_size": "large", "hyperparameters": [1, 2]},
    {"formatting": "question/answer", "stopped": "yes", "steps": 3.5},
]


@pytest.mark.parametrize(
    "fields", BAD_FIELDS, ids=["types", "created-overflow", "template", "block", "shapes"]
)
def test_one_bad_metadata_file_hides_no_model_and_generation_still_works(
    two_models: tuple[Path, Path], fields: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    spoil(two_models[1], **fields)
    assert main(["models", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"tiny", "odd"}
    problems = listed["odd"].get("unreadable_fields", [])
    assert set(problems) <= {
        "dataset",
        "perplexity_before",
        "formatting",
        "formatting.prompt_template",
        "formatting.stop_text",
        "block_size",
        "hyperparameters",
        "stopped",
        "steps",
    } and (problems or fields.get("created"))
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "odd" in table
    assert main(["generate", "odd", "Hi", "--max-new-tokens", "3", "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_tokens"] <= 3
    assert main(["eval", "odd", str(QA_CSV), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] > 0


def test_an_overflowing_date_reads_as_unknown() -> None:
    meta = ModelMetadata.from_dict({"created": "9999-12-31T23:59:59-12:00"})
    assert meta.created_at is None and meta.problems == ()


def test_a_folder_without_config_is_listed_as_broken_and_can_be_removed(
    home: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "models" / "w").mkdir()
    (home / "models" / "w" / "model.safetensors").write_bytes(b"x")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert (
        "w                                broken: it has no config.json (remove it with 'gpt2tui models rm w')"
        in out
    )
    assert main(["train", str(QA_CSV), "--base", "scratch", "--name", "w"]) == 2
    assert "A model named 'w' already exists" in capsys.readouterr().err
    assert main(["generate", "w", "Hi"]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: The model folder 'w' is broken (it has no config.json); remove it with 'gpt2tui models rm w'.\n"
    )
    assert main(["models", "rm", "w"]) == 0
    assert capsys.readouterr().out == "deleted w\n"
    assert sorted(p.name for p in (home / "models").iterdir()) == ["tiny"]


def test_rename_on_a_full_disk_changes_nothing(
    tiny_model: str, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gpt2tui.core.store as store_module

    before = tree_snapshot(home)
    real = store_module.write_text_synced

    def full(path: Path, text: str) -> None:
        real(path, text[: len(text) // 2])  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "write_text_synced", full)
    assert main(["models", "rename", "tiny", "renamed"]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: Could not rename tiny: the disk is full; free some space and try again.\n"
    )
    assert tree_snapshot(home) == before


def test_rename_rewrites_the_card_and_metadata(tiny_model: str, home: Path) -> None:
    info = ModelStore().rename("tiny", "renamed")
    assert info.metadata.name == "renamed"
    card = (info.path / CARD_FILE).read_text()
    assert "\n# renamed\n" in card and "\n# tiny\n" not in card
    assert not [p for p in info.path.iterdir() if p.name.startswith(".")]


def test_rename_keeps_metadata_fields_this_version_cannot_read(tiny_model: str, home: Path) -> None:
    """A newer gpt2tui's fields (or a hand edit's) survive a rename, as they survive an evaluation."""
    meta_path = home / "models" / "tiny" / META_FILE
    raw = json.loads(meta_path.read_text())
    raw["future_field"] = {"x": 1}
    meta_path.write_text(json.dumps(raw))
    info = ModelStore().rename("tiny", "renamed")
    kept = json.loads((info.path / META_FILE).read_text())
    assert kept["future_field"] == {"x": 1} and kept["name"] == "renamed"
    assert {k: v for k, v in kept.items() if k != "name"} == {k: v for k, v in raw.items() if k != "name"}


def test_rename_refuses_a_metadata_file_it_cannot_read(
    tiny_model: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewriting it from the typed view replaced a hand edit's typo with empty metadata."""
    (home / "models" / "tiny" / META_FILE).write_text('{"name": "tiny", oops')
    before = tree_snapshot(home)
    assert main(["models", "rename", "tiny", "renamed"]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: Could not rename tiny: its gpt2tui.json is not a readable JSON object; repair that file and "
        "rename it again.\n"
    )
    assert tree_snapshot(home) == before


@pytest.mark.parametrize("odd", ["my model", "日本"])
def test_a_folder_copied_in_under_an_odd_name_can_be_used_renamed_and_deleted(
    tiny_model: str, home: Path, odd: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was listed, but every command refused its name ("not a valid model name"): stuck for good."""
    shutil.copytree(home / "models" / "tiny", home / "models" / odd)
    store = ModelStore()
    assert odd in [info.name for info in store.list()]
    assert store.resolve(odd).path == home / "models" / odd
    assert main(["models", "show", odd]) == 0
    assert main(["models", "rename", odd, "fine"]) == 0 and store.has("fine")
    shutil.copytree(home / "models" / "tiny", home / "models" / odd)
    assert main(["models", "rm", odd]) == 0
    assert sorted(p.name for p in (home / "models").iterdir()) == ["fine", "tiny"]
    assert main(["models", "rename", "fine", odd]) == 2  # a new name still follows the rule
    assert "is not a valid model name" in capsys.readouterr().err


def test_folders_with_a_damaged_config_or_no_weights_are_listed_as_broken(
    tiny_model: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They looked like the good models until opened; the good one is listed as before."""
    models = home / "models"
    shutil.copytree(models / "tiny", models / "bad-config")
    (models / "bad-config" / "config.json").write_text('{"n_embd": 64,')
    shutil.copytree(models / "tiny", models / "no-weights")
    (models / "no-weights" / "model.safetensors").unlink()
    listed = {info.name: info.broken for info in ModelStore().list(include_broken=True)}
    assert listed == {
        "tiny": None,
        "bad-config": "its config.json is not a readable JSON object",
        "no-weights": "it has no .safetensors weights",
    }
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "no-weights                       broken: it has no .safetensors weights" in out


def test_read_only_store_refusals_are_one_sentence(
    tiny_model: str, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(os, "rename", refuse)
    before = tree_snapshot(home)
    assert main(["models", "rm", "tiny"]) == 2
    assert capsys.readouterr().err == (
        f"gpt2tui: Could not delete tiny: permission denied ({home / 'models' / 'tiny'}).\n"
    )
    assert main(["models", "rename", "tiny", "other"]) == 2
    assert capsys.readouterr().err == (
        f"gpt2tui: Could not rename tiny: permission denied ({home / 'models' / 'tiny'}).\n"
    )
    assert tree_snapshot(home) == before


def test_leftover_temporary_folders_of_dead_processes_are_removed(home: Path, tiny_model: str) -> None:
    root = home / "models"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = root / f".tmp-x-{dead.pid}-0123abcd"
    live = root / f".tmp-y-{os.getpid()}-4567cdef"  # this process is alive and older than the folder
    old_style = root / ".tmp-z-89abcdef"
    for folder in (leftover, live, old_style):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old_style, (two_hours_ago, two_hours_ago))
    ModelStore()
    assert sorted(p.name for p in root.iterdir()) == sorted(["tiny", live.name])


def test_a_closed_pipe_is_a_quiet_exit(tiny_model: str) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from gpt2tui.cli import main; sys.exit(main(['models', 'show', 'tiny']))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `| head` that read nothing
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


def test_a_name_with_a_newline_is_refused_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(QA_CSV), "--base", "scratch", "--name", "bad\nname"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpt2tui: 'bad\\nname' is not a valid model name;")


def test_without_a_terminal_the_screens_refuse_in_one_sentence(home: Path) -> None:
    run = gpt2tui(stdin=subprocess.DEVNULL)
    assert run.returncode == 2
    assert run.stderr == f"gpt2tui: {NO_TERMINAL}\n"
    assert not home.exists()
