"""The model store: one ``save_pretrained`` folder per model, written atomically, with metadata and a card.

A model is written into a hidden temporary sibling and renamed into place only when complete, so a crash
never leaves a half model that later loads; listing ignores hidden folders, and the next opening of the store
removes those a killed process left behind. A folder without ``config.json`` is listed as broken (so it
can be removed), never hidden, and never hides the others.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2tui.core.card import EvaluationRecord, ModelMetadata, model_card
from gpt2tui.core.errors import UserError
from gpt2tui.core.files import fsync_tree, staging_path, write_text_synced

log = logging.getLogger(__name__)

META_FILE = "gpt2tui.json"
CARD_FILE = "README.md"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
NAME_RULE = "use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class ModelInfo:
    """A stored model: its folder and its typed metadata; ``broken`` says why it cannot be loaded."""

    name: str
    path: Path
    metadata: ModelMetadata
    broken: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {**self.metadata.to_dict(), "name": self.name, "path": str(self.path)}
        if self.broken:
            data["broken"] = self.broken
        if self.metadata.problems:
            data["unreadable_fields"] = list(self.metadata.problems)
        return data


def validate_name(name: str) -> str:
    """Refuse names that could escape the store or confuse a shell."""
    if not NAME_RE.fullmatch(name or "") or name in (".", ".."):
        raise UserError(f"'{printable(name)}' is not a valid model name; {NAME_RULE}.")
    return name


def printable(text: str) -> str:
    """``text`` with control characters escaped, so a sentence quoting it stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def read_metadata(folder: Path) -> ModelMetadata:
    """The folder's gpt2tui metadata; empty for a plain ``save_pretrained`` folder, tolerant of bad fields."""
    path = folder / META_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ModelMetadata()
    except (OSError, UnicodeDecodeError) as err:
        log.warning("%s: unreadable (%s)", path, err)
        return ModelMetadata(problems=("the file is unreadable",))
    try:
        data = json.loads(text)
    except ValueError:
        log.warning("%s: not valid JSON", path)
        return ModelMetadata(problems=("the file is not valid JSON",))
    return ModelMetadata.from_dict(data, source=str(path))


TEMP_PREFIXES = (".tmp-", ".trash-")
"""Hidden folders of a save or delete in progress: ``.tmp-<name>-<pid>-<hex>``."""
LEGACY_LEFTOVER_SECONDS = 3600


class ModelStore:
    """Models under ``root`` (default: ``<data dir>/models``)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from gpt2tui.paths import models_dir

            root = models_dir()
        self.root = root  # created by the first save, so reading never writes
        remove_leftovers(root)

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

    def require_free(self, name: str, run: str | None = None, what: str = "--name") -> str:
        """Fail before any work if ``name`` is taken: models are never overwritten silently (a model saved by
        the same ``run``, when it was stopped and is now resumed, is the one exception)."""
        if self.exists(name) and not self._saved_by(name, run):
            problem = f"A model named '{name}' already exists"
            raise UserError(
                f"{problem}; choose another {what} or delete it with 'gpt2tui models rm {name}'.",
                problem=problem,
                fix="name_taken",
                name=name,
            )
        return name

    def unique_name(self, stem: str, taken: Callable[[str], bool] | None = None) -> str:
        """``stem`` made valid, with ``-2``, ``-3``… appended until it is free (not ``taken``; default: stored)."""
        taken = taken or self.exists
        clean = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:70] or "model"
        if not clean[0].isalnum():
            clean = "m" + clean
        name, n = clean, 1
        while taken(name):
            n += 1
            name = f"{clean}-{n}"
        return name

    def list(self, include_broken: bool = False) -> list[ModelInfo]:
        """Complete stored models, newest first; with ``include_broken``, broken folders after them."""
        infos, broken = [], []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            info = self._info(folder)
            (broken if info.broken else infos).append(info)
        infos.sort(key=lambda i: (i.metadata.created or "", i.name), reverse=True)
        return infos + broken if include_broken else infos

    def _info(self, folder: Path) -> ModelInfo:
        return ModelInfo(folder.name, folder, read_metadata(folder), folder_problem(folder))

    def listed_folder(self, name: str) -> Path | None:
        """The folder :meth:`list` shows as ``name``, whatever its name: one copied in by hand ("my model",
        "日本") is listed, so it can be shown, used, renamed and deleted by that name. Only new names must follow
        the rule (:func:`validate_name`)."""
        if not name or name.startswith(".") or "/" in name or "\0" in name or os.sep in name:
            return None
        path = self.root / name
        return path if path.is_dir() else None

    def get(self, name: str, allow_broken: bool = False) -> ModelInfo:
        path = self.listed_folder(name) or self.path_for(name)
        if path.is_dir() and not path.name.startswith("."):
            info = self._info(path)
            if allow_broken or not info.broken:
                return info
            raise UserError(
                f"The model folder '{name}' is broken ({info.broken}); remove it with 'gpt2tui models rm {name}'."
            )
        raise UserError(f"No stored model named '{name}'; 'gpt2tui models list' shows the stored models.")

    def resolve(self, ref: str) -> ModelInfo:
        """A stored model's name, or a path to any ``save_pretrained`` folder."""
        if self.has(ref) or self.listed_folder(ref) is not None:
            return self.get(ref)  # a broken stored folder says so, rather than "no such model"
        path = Path(ref).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(f"{ref} is not a model folder: it has no config.json.")
            return self._info(path)
        raise UserError(
            f"No stored model named '{ref}' and no folder at that path; 'gpt2tui models list' shows the stored models."
        )

    def _saved_by(self, name: str, run: str | None) -> bool:
        return run is not None and read_metadata(self.path_for(name)).run == run

    def save(
        self, name: str, write: Callable[[Path], None], metadata: ModelMetadata, run: str | None = None
    ) -> ModelInfo:
        """Write a model atomically: ``write(tmp)`` fills a hidden folder that is then renamed to ``name``.

        A model saved earlier by the same ``run`` (stopped, then resumed) is replaced in one rename.
        """
        final = self.path_for(name)
        self.require_free(name, run)
        from gpt2tui.paths import ensure_dir

        ensure_dir(self.root)
        tmp = self.root / temp_name(".tmp-", name)
        tmp.mkdir()
        try:
            write(tmp)
            _write_description(tmp, dataclasses.replace(metadata, name=name))
            fsync_tree(tmp)
            if final.exists() and self._saved_by(name, run):
                old = self.root / temp_name(".trash-", name)
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            elif final.exists():  # someone else took the name while we trained
                raise UserError(
                    f"A model named '{name}' appeared while training; the new model was not saved."
                )
            else:
                os.rename(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(os_sentence(f"save the model '{name}'", err)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(name)

    def rename(self, old: str, new: str) -> ModelInfo:
        """All or nothing: the new metadata and card are written beside the old ones first (the step that
        can run out of space), then the folder is renamed, then they replace the old files."""
        info = self.get(old)
        self.require_free(new, what="name")
        from gpt2tui.core.runs import follow_rename, name_owner, owner_error, renaming_refused

        refused = renaming_refused(old)
        if refused is not None:
            raise refused
        owner = name_owner(new)
        if owner is not None:
            raise owner_error(owner, new, what="name")
        target = self.path_for(new)
        staged = {
            META_FILE: info.path / f".{META_FILE}.{uuid.uuid4().hex}.tmp",
            CARD_FILE: info.path / f".{CARD_FILE}.{uuid.uuid4().hex}.tmp",
        }
        # Merged, not rewritten from the typed view: fields this version cannot read (a newer gpt2tui's, a hand
        # edit's) survive, as with an evaluation; an unreadable file is refused rather than replaced.
        raw = _raw_metadata(info.path, f"rename {old}", "rename it again")
        try:
            if raw:
                raw["name"] = new
                write_text_synced(staged[META_FILE], json.dumps(raw, indent=2, sort_keys=True) + "\n")
                write_text_synced(staged[CARD_FILE], model_card(dataclasses.replace(info.metadata, name=new)))
            os.rename(info.path, target)
        except OSError as err:
            for path in staged.values():
                path.unlink(missing_ok=True)
            raise UserError(os_sentence(f"rename {old}", err)) from None
        for final_name, path in staged.items():
            moved = target / path.name
            if moved.exists():
                os.replace(moved, target / final_name)
        follow_rename(old, new)
        return self.get(new)

    def record_evaluation(self, name: str, record: EvaluationRecord) -> ModelInfo:
        """Store ``record`` with the model: its metadata and card gain it (replacing the same measurement).

        The metadata file is merged, not rewritten from the typed view, so fields this version cannot read
        (a newer gpt2tui's, a hand edit's) survive. Both files are staged and flushed first, then renamed over
        the old ones: a crash or a full disk leaves the old files or the new ones, never a truncated one.
        """
        info = self.get(name)
        raw = _raw_metadata(info.path, f"store the evaluation with {name}", "evaluate again")
        meta = ModelMetadata.from_dict(raw, source=str(info.path / META_FILE)).with_evaluation(record)
        stored = meta.to_dict()
        raw.update(evaluations=stored["evaluations"], schema_version=stored["schema_version"])
        if not isinstance(raw.get("name"), str):
            raw["name"] = name
        staged = {
            META_FILE: staging_path(info.path / META_FILE),
            CARD_FILE: staging_path(info.path / CARD_FILE),
        }
        try:
            write_text_synced(staged[META_FILE], json.dumps(raw, indent=2, sort_keys=True) + "\n")
            write_text_synced(staged[CARD_FILE], model_card(dataclasses.replace(meta, name=name)))
            for final_name, path in staged.items():
                os.replace(path, info.path / final_name)
        except OSError as err:
            raise UserError(os_sentence(f"store the evaluation with {name}", err)) from None
        finally:
            for path in staged.values():
                path.unlink(missing_ok=True)
        return self.get(name)

    def delete(self, name: str) -> None:
        """Move the folder aside first, so a half-deleted model is never listed (broken folders too)."""
        info = self.get(name, allow_broken=True)
        trash = self.root / temp_name(".trash-", name)
        try:
            os.rename(info.path, trash)
        except OSError as err:
            raise UserError(os_sentence(f"delete {name}", err)) from None
        shutil.rmtree(trash, ignore_errors=True)


def os_sentence(doing: str, err: OSError) -> str:
    """One sentence for a file-system refusal (read-only store, permissions, full disk)."""
    if err.errno == errno.ENOSPC:
        return f"Could not {doing}: the disk is full; free some space and try again."
    reason = (err.strerror or str(err)).lower()
    where = f" ({err.filename})" if err.filename else ""
    return f"Could not {doing}: {reason}{where}."


def temp_name(prefix: str, name: str) -> str:
    """A hidden working name that records its owner's pid, so leftovers of dead processes can be told apart."""
    return f"{prefix}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_leftovers(root: Path) -> None:
    """Remove hidden temporary folders whose writing process is gone (a live save's folder stays)."""
    from gpt2tui.core.procs import start_time

    if not root.is_dir():
        return
    for folder in root.iterdir():
        if not folder.name.startswith(TEMP_PREFIXES) or not folder.is_dir():
            continue
        match = re.search(r"-(\d+)-[0-9a-f]{8}$", folder.name)
        pid = int(match.group(1)) if match else None
        started = start_time(pid) if pid else None
        try:
            created = folder.stat().st_mtime
        except OSError:
            continue
        if started is not None and started <= created + 1:
            continue  # its writer may still be at work
        if pid is None and time.time() - created < LEGACY_LEFTOVER_SECONDS:
            continue  # an old-style name records no owner: only an old one is surely abandoned
        log.info("removing leftover %s", folder)
        shutil.rmtree(folder, ignore_errors=True)


def folder_problem(folder: Path) -> str | None:
    """Why a model folder cannot load, from what is quick to see (None: it looks whole). Listed with it, so
    that a folder with a damaged config or no weights is marked on the home screen and in ``models list``
    instead of looking like the others until it is opened."""
    config = folder / "config.json"
    if not config.is_file():
        return "it has no config.json"
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        return "its config.json is not a readable JSON object"
    if not any(folder.glob("*.safetensors")):
        if any(folder.glob("*.bin")):
            return "its weights are a pickle (.bin), and gpt2tui loads only .safetensors"
        return "it has no .safetensors weights"
    return None


def _raw_metadata(folder: Path, doing: str, again: str) -> dict[str, Any]:
    """The folder's metadata as stored (``{}`` for a plain folder), or why it cannot be merged into (``doing``
    and ``again`` complete that sentence)."""
    path = folder / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise UserError(
            f"Could not {doing}: its {META_FILE} is not a readable JSON object; repair that file and {again}."
        )
    return data


def _meta_json(meta: ModelMetadata) -> str:
    return json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"


def _write_description(folder: Path, meta: ModelMetadata) -> None:
    (folder / CARD_FILE).write_text(model_card(meta), encoding="utf-8")
    (folder / META_FILE).write_text(_meta_json(meta), encoding="utf-8")
