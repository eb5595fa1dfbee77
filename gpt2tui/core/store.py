"""The model store: one ``save_pretrained`` folder per model, written atomically, with metadata and a card.

A model is written into a hidden temporary sibling and renamed into place only when complete, so a crash
never leaves a half model that later loads; listing ignores hidden folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2tui.core.errors import UserError

META_FILE = "gpt2tui.json"
CARD_FILE = "README.md"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
NAME_RULE = "use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class ModelInfo:
    """A stored model: its folder and its metadata (see :func:`gpt2tui.core.training.build_metadata`)."""

    name: str
    path: Path
    metadata: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {**self.metadata, "name": self.name, "path": str(self.path)}


def validate_name(name: str) -> str:
    """Refuse names that could escape the store or confuse a shell."""
    if not NAME_RE.fullmatch(name or "") or name in (".", ".."):
        raise UserError(f"'{name}' is not a valid model name; {NAME_RULE}.")
    return name


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a temporary sibling, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_metadata(folder: Path) -> dict[str, Any]:
    """The folder's gpt2tui metadata, or ``{}`` for a plain ``save_pretrained`` folder."""
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ModelStore:
    """Models under ``root`` (default: ``<data dir>/models``)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from gpt2tui.paths import models_dir

            root = models_dir()
        self.root = root  # created by the first save, so reading never writes

    def path_for(self, name: str) -> Path:
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def has(self, name: str) -> bool:
        """Whether ``name`` is a complete stored model (any string; invalid names are simply absent)."""
        return (
            bool(NAME_RE.fullmatch(name))
            and name not in (".", "..")
            and (self.root / name / "config.json").is_file()
        )

    def require_free(self, name: str) -> str:
        """Fail before any work if ``name`` is taken: models are never overwritten silently."""
        if self.exists(name):
            raise UserError(
                f"A model named '{name}' already exists; choose another --name or delete it with "
                f"'gpt2tui models rm {name}'."
            )
        return name

    def unique_name(self, stem: str) -> str:
        """``stem`` made valid, with ``-2``, ``-3``… appended until it is free."""
        clean = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:70] or "model"
        if not clean[0].isalnum():
            clean = "m" + clean
        name, n = clean, 1
        while self.exists(name):
            n += 1
            name = f"{clean}-{n}"
        return name

    def list(self) -> list[ModelInfo]:
        """Complete stored models, newest first."""
        infos = []
        for folder in self.root.iterdir() if self.root.is_dir() else []:
            if folder.name.startswith(".") or not folder.is_dir() or not (folder / "config.json").is_file():
                continue
            infos.append(ModelInfo(folder.name, folder, read_metadata(folder)))
        return sorted(infos, key=lambda i: (str(i.get("created", "")), i.name), reverse=True)

    def get(self, name: str) -> ModelInfo:
        path = self.path_for(name)
        if not (path / "config.json").is_file():
            raise UserError(f"No stored model named '{name}'; 'gpt2tui models list' shows the stored models.")
        return ModelInfo(name, path, read_metadata(path))

    def resolve(self, ref: str) -> ModelInfo:
        """A stored model's name, or a path to any ``save_pretrained`` folder."""
        if self.has(ref):
            return self.get(ref)
        path = Path(ref).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(f"{ref} is not a model folder: it has no config.json.")
            return ModelInfo(path.name, path, read_metadata(path))
        raise UserError(
            f"No stored model named '{ref}' and no folder at that path; 'gpt2tui models list' shows the stored models."
        )

    def save(
        self, name: str, write: Callable[[Path], None], metadata: dict[str, Any], card: str
    ) -> ModelInfo:
        """Write a model atomically: ``write(tmp)`` fills a hidden folder that is then renamed to ``name``."""
        final = self.path_for(name)
        self.require_free(name)
        from gpt2tui.paths import ensure_dir

        ensure_dir(self.root)
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write(tmp)
            (tmp / CARD_FILE).write_text(card, encoding="utf-8")
            (tmp / META_FILE).write_text(
                json.dumps({**metadata, "name": name}, indent=2, sort_keys=True) + "\n"
            )
            _fsync_tree(tmp)
            if final.exists():  # someone else took the name while we trained
                raise UserError(
                    f"A model named '{name}' appeared while training; the new model was not saved."
                )
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(name)

    def rename(self, old: str, new: str) -> ModelInfo:
        info = self.get(old)
        self.require_free(new)
        target = self.path_for(new)
        os.rename(info.path, target)
        meta = read_metadata(target)
        if meta:
            meta["name"] = new
            write_json_atomic(target / META_FILE, meta)
        return self.get(new)

    def delete(self, name: str) -> None:
        """Move the folder aside first, so a half-deleted model is never listed."""
        info = self.get(name)
        trash = self.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(info.path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
