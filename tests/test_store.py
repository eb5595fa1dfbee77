"""The model store: names, atomic saves, listing, rename, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2tui.core.card import ModelMetadata
from gpt2tui.core.errors import UserError
from gpt2tui.core.store import CARD_FILE, META_FILE, ModelStore, validate_name
from tests.conftest import tree_snapshot


def fake_writer(folder: Path) -> None:
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")


@pytest.fixture
def store(home: Path) -> ModelStore:
    return ModelStore()


@pytest.mark.parametrize(
    "bad", ["../evil", "a/b", "", ".hidden", "..", "-flag", "x" * 81, "sp ace", "a\\b", "bad\n", "a\x00"]
)
def test_invalid_names_are_refused(bad: str) -> None:
    with pytest.raises(UserError) as info:
        validate_name(bad)
    shown = bad.replace("\n", "\\n").replace("\x00", "\\x00")
    assert str(info.value) == (
        f"'{shown}' is not a valid model name; use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit."
    )
    assert "\n" not in str(info.value)


def test_store_lives_under_gpt2tui_home_and_reading_writes_nothing(store: ModelStore, home: Path) -> None:
    assert store.root == home / "models"
    assert store.list() == []
    with pytest.raises(UserError):
        store.get("ghost")
    assert not home.exists()


def test_save_list_get_rename_delete(store: ModelStore) -> None:
    info = store.save("first", fake_writer, ModelMetadata(base="scratch", created="2026-01-01T00:00:00"))
    assert info.path == store.root / "first" and (info.path / CARD_FILE).read_text().count("# first\n") == 1
    assert json.loads((info.path / META_FILE).read_text())["name"] == "first"
    store.save("second", fake_writer, ModelMetadata(created="2026-02-01T00:00:00"))
    assert [i.name for i in store.list()] == ["second", "first"]
    renamed = store.rename("first", "renamed")
    assert renamed.metadata.name == "renamed" and not (store.root / "first").exists()
    card = (renamed.path / CARD_FILE).read_text()
    assert "# renamed\n" in card and "# first\n" not in card  # the card follows the new name
    assert sorted(p.name for p in renamed.path.iterdir()) == sorted(
        ["config.json", "model.safetensors", CARD_FILE, META_FILE]
    )
    store.delete("renamed")
    assert [i.name for i in store.list()] == ["second"]
    assert not any(p.name.startswith(".trash") for p in store.root.iterdir())


def test_existing_name_is_never_overwritten(store: ModelStore) -> None:
    store.save("taken", fake_writer, ModelMetadata())
    before = tree_snapshot(store.root)
    with pytest.raises(UserError) as info:
        store.save("taken", fake_writer, ModelMetadata(base="other"))
    assert str(info.value) == (
        "A model named 'taken' already exists; choose another --name or delete it with 'gpt2tui models rm taken'."
    )
    store.save("other", fake_writer, ModelMetadata())
    before = tree_snapshot(store.root)
    with pytest.raises(UserError) as info:
        store.rename("other", "taken")
    assert str(info.value) == (  # rename has no --name: its second argument is the name
        "A model named 'taken' already exists; choose another name or delete it with 'gpt2tui models rm taken'."
    )
    assert tree_snapshot(store.root) == before


def test_crash_while_writing_leaves_nothing_behind(store: ModelStore) -> None:
    def crash(folder: Path) -> None:
        fake_writer(folder)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.save("broken", crash, ModelMetadata())
    assert list(store.root.iterdir()) == []
    assert store.list() == []


def test_half_written_folders_are_not_listed_and_a_folder_without_config_is_broken(store: ModelStore) -> None:
    (store.root / ".tmp-x-123").mkdir(parents=True)
    fake_writer(store.root / ".tmp-x-123")
    (store.root / "no-config").mkdir()
    assert store.list() == []
    assert [(i.name, i.broken) for i in store.list(include_broken=True)] == [
        ("no-config", "it has no config.json")
    ]


def test_unique_name_and_missing_model(store: ModelStore) -> None:
    store.save("qa-gpt2", fake_writer, ModelMetadata())
    assert store.unique_name("qa-gpt2") == "qa-gpt2-2"
    assert store.unique_name("../we ird//name") == "we-ird-name"
    with pytest.raises(UserError) as info:
        store.get("ghost")
    assert str(info.value) == "No stored model named 'ghost'; 'gpt2tui models list' shows the stored models."


def test_resolve_accepts_names_and_folders(store: ModelStore, tmp_path: Path) -> None:
    store.save("named", fake_writer, ModelMetadata(base="gpt2"))
    assert store.resolve("named").metadata.base == "gpt2"
    outside = tmp_path / "outside"
    outside.mkdir()
    fake_writer(outside)
    assert store.resolve(str(outside)).path == outside
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"is not a model folder: it has no config\.json"):
        store.resolve(str(tmp_path / "empty"))
