"""Checkpoint folders: written whole or not at all, the newest K kept, partial ones never used.

``checkpoints/step-<N>/`` is filled in a hidden temporary folder, gets a ``COMPLETE`` marker last, is flushed
to disk and only then renamed into place; a folder without the marker (a ``kill -9`` mid-write, a full disk)
is ignored by resume and removed once its writer is gone.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpt2tui.core.errors import UserError
from gpt2tui.core.files import fsync_tree

COMPLETE = "COMPLETE"
STEP_RE = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-step-"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path


def complete_checkpoints(folder: Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = STEP_RE.match(path.name)
        if match and (path / COMPLETE).is_file():
            found.append(Checkpoint(int(match.group(1)), path))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(folder: Path) -> Checkpoint | None:
    found = complete_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(folder: Path, step: int, write: Callable[[Path], None], keep: int) -> Checkpoint:
    """Write a checkpoint through ``write(tmp)``; on any failure nothing half-written is left behind.

    The previous checkpoints are untouched until the new one is complete, then all but the newest ``keep``
    are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{TMP_PREFIX}{step}-{os.getpid()}-{secrets.token_hex(4)}"
    final = folder / f"step-{step}"
    try:
        tmp.mkdir()
        write(tmp)
        (tmp / COMPLETE).write_text(f"{step}\n", encoding="utf-8")
        fsync_tree(tmp)
        if final.exists():  # the same step saved again (a stop right after a scheduled save)
            _remove(final)  # renamed aside first: a kill never leaves a marked but emptied step folder
        os.rename(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(_disk_sentence(f"the checkpoint at step {step}", err)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in complete_checkpoints(folder)[:-keep]:
        _remove(old.path)
    return Checkpoint(step, final)


def _remove(path: Path) -> None:
    """Rename out of view (one atomic step), then delete; ``remove_partial`` finishes a killed delete."""
    aside = path.with_name(f"{TMP_PREFIX}old-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _disk_sentence(what: str, err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return f"Could not write {what}: the disk is full; free some space, then resume the run."
    return f"Could not write {what}: {(err.strerror or str(err)).lower()}."


def remove_partial(folder: Path) -> None:
    """Remove temporary and unmarked checkpoint folders (call only when no process is writing here)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(TMP_PREFIX) or (STEP_RE.match(path.name) and not (path / COMPLETE).is_file()):
            shutil.rmtree(path, ignore_errors=True)
