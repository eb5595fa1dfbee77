"""Durable writes: flushed to disk before they become visible, so a crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_text_synced(path: Path, text: str, sync: bool = True) -> None:
    """Write ``text`` and (with ``sync``) flush it to disk before returning."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Any, sync: bool = True) -> None:
    """Write to a hidden sibling, then rename over ``path``: readers see the old file or the new one, never
    a mix. ``sync=False`` skips the flush to disk, for files rewritten often whose loss in a power cut is
    harmless (a run's status)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", sync)


def write_text_atomic(path: Path, text: str, sync: bool = True) -> None:
    """``write_json_atomic`` for text: the old file or the new one, never a mix or a truncated file."""
    tmp = staging_path(path)
    try:
        write_text_synced(tmp, text, sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def staging_path(path: Path) -> Path:
    """A hidden sibling of ``path`` to write before renaming over it (unique per process and call)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_tree(folder: Path) -> None:
    """Flush every file directly in ``folder`` to disk (before the folder is renamed into place)."""
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
