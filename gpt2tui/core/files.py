"""Durable writes: flushed to disk before they become visible, so a crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_text_synced(path: Path, text: str) -> None:
    """Write ``text`` and flush it to disk before returning."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a hidden sibling, flush it to disk, then rename over ``path``: readers see old or new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write_text_synced(tmp, json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_tree(folder: Path) -> None:
    """Flush every file directly in ``folder`` to disk (before the folder is renamed into place)."""
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
