"""The cache under the data directory: entries built once, keyed by what they were made from, shared by runs.

An entry is a folder ``<kind>/<key>/`` written under a temporary name, given a ``COMPLETE`` marker and renamed
into place, so a crash mid-build leaves no entry a reader would trust. Builders of the same key take a file
lock, so two runs started together pack once. The total size is capped: after each build the least recently
used entries go first. Readers memory-map files of an entry; removing it while mapped is safe on POSIX (the
mapping keeps the data until it is closed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2tui.core.errors import UserError
from gpt2tui.paths import data_dir, ensure_dir

LIMIT_ENV = "GPT2TUI_CACHE_LIMIT_GB"
DEFAULT_LIMIT_GB = 10.0
COMPLETE = "COMPLETE"
META = "meta.json"
KINDS = ("tokens", "tokenizers")


def cache_dir() -> Path:
    """``<data dir>/cache`` (created only when something is written)."""
    return data_dir() / "cache"


UNLIMITED = 2**62
"""The cap ``GPT2TUI_CACHE_LIMIT_GB=inf`` stands for: more bytes than any disk holds."""


def limit_bytes() -> int:
    """The size cap: ``GPT2TUI_CACHE_LIMIT_GB`` (0 keeps only the entry just built), else 10 GB."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return int(DEFAULT_LIMIT_GB * 1e9)
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{LIMIT_ENV} must be a number of gigabytes, not '{raw}'.") from None
    if math.isnan(value) or value < 0:
        raise UserError(f"{LIMIT_ENV} must be 0 or more, not {raw}.")
    return int(min(value * 1e9, UNLIMITED))  # "inf" (or 1e400): no cap


@dataclass(frozen=True)
class CacheEntry:
    """One stored entry, as ``gpt2tui cache list`` shows it."""

    kind: str
    key: str
    path: Path
    bytes: int
    last_used: float
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "path": str(self.path),
            "bytes": self.bytes,
            "last_used": self.last_used,
            **{k: v for k, v in self.meta.items() if k in ("source", "tokens", "dtype", "rows", "sha256")},
        }


def _folder_bytes(folder: Path) -> int:
    total = 0
    for item in folder.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:
            continue
    return total


class Cache:
    """Entries of every kind under one root; the root and the cap are arguments so tests can pick them."""

    def __init__(self, root: Path | None = None, limit: int | None = None) -> None:
        self.root = root if root is not None else cache_dir()
        self.limit = limit if limit is not None else limit_bytes()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> Path | None:
        """The entry's folder if it is complete (its use time is refreshed, for eviction), else None."""
        folder = self.path(kind, key)
        marker = folder / COMPLETE
        if not marker.is_file():
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(marker)
        return folder

    @contextmanager
    def locked(self, kind: str, key: str) -> Iterator[None]:
        """Exclusive while building ``key``: a second builder waits, then finds the entry made."""
        locks = ensure_dir(self.root / "locks")
        with open(locks / f"{kind}-{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def build(self, kind: str, key: str, write: Callable[[Path], dict[str, Any]]) -> Path:
        """Run ``write(folder)`` into a temporary folder, store what it returns as the entry's metadata,
        mark it complete and move it into place; then trim the cache to its cap (never this entry)."""
        final = self.path(kind, key)
        temp = ensure_dir(self.root / kind) / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        temp.mkdir()
        try:
            meta = write(temp)
            meta = {**meta, "key": key, "kind": kind, "created": time.time()}
            (temp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            (temp / COMPLETE).write_text("", encoding="utf-8")
            if final.exists():  # an incomplete leftover of a crashed build
                shutil.rmtree(final, ignore_errors=True)
            temp.rename(final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self.trim(keep=final)
        return final

    def entries(self) -> list[CacheEntry]:
        """Complete entries, most recently used first."""
        found: list[CacheEntry] = []
        for kind in KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                marker = entry / COMPLETE
                if entry.name.startswith(".") or not marker.is_file():
                    continue
                try:
                    meta = json.loads((entry / META).read_text(encoding="utf-8"))
                    used = marker.stat().st_mtime
                except (OSError, ValueError):
                    meta, used = {}, 0.0
                found.append(CacheEntry(kind, entry.name, entry, _folder_bytes(entry), used, meta))
        return sorted(found, key=lambda e: e.last_used, reverse=True)

    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    def trim(self, keep: Path | None = None) -> list[CacheEntry]:
        """Remove least recently used entries until the total fits the cap; returns what was removed."""
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        removed = []
        for entry in reversed(entries):
            if total <= self.limit:
                break
            if keep is not None and entry.path == keep:
                continue
            self._remove(entry.path)
            total -= entry.bytes
            removed.append(entry)
        return removed

    def clear(self) -> tuple[int, int]:
        """Remove every entry and leftover; returns ``(entries, bytes)`` removed."""
        entries = self.entries()
        for entry in entries:
            self._remove(entry.path)
        for kind in KINDS:
            folder = self.root / kind
            if folder.is_dir():
                for leftover in folder.iterdir():
                    if self._leftover(kind, leftover):
                        shutil.rmtree(leftover, ignore_errors=True)
        locks = self.root / "locks"
        if locks.is_dir():
            for lock in locks.iterdir():
                with _unless_held(lock) as free:
                    if free:  # a lock a build holds stays: unlinked, a second builder would get its own
                        lock.unlink(missing_ok=True)
        return len(entries), sum(e.bytes for e in entries)

    def _leftover(self, kind: str, folder: Path) -> bool:
        """A temporary folder no build is writing: a crashed or killed build's ``.tmp-KEY-xxxxxxxx`` (whatever
        its age: its build's lock is free), or a removal's that has stood for an hour.

        A live build's folder keeps its creation time (it writes into subfolders and files), so age alone
        once took a pack of a big file that had run for over an hour, and left a killed one's gigabytes for
        an hour.
        """
        name = folder.name
        if name.startswith(".tmp-removed-"):
            return _stale(folder)
        if not name.startswith(".tmp-"):
            return False
        key = name[len(".tmp-") :].rsplit("-", 1)[0]
        with _unless_held(self.root / "locks" / f"{kind}-{key}.lock") as free:
            return free

    def _remove(self, folder: Path) -> None:
        """Rename aside first, so a reader never sees a half-removed entry as complete."""
        aside = folder.with_name(f".tmp-removed-{folder.name}-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(aside)
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def _unless_held(lock: Path) -> Iterator[bool]:
    """True (holding it meanwhile) when no process holds the build lock ``lock`` (or it does not exist)."""
    try:
        handle = open(lock, "a")  # noqa: SIM115 (held across the yield)
    except FileNotFoundError:
        yield True
        return
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stale(folder: Path, age: float = 3600.0) -> bool:
    """A removal's temporary folder untouched for an hour (another process may still be deleting it)."""
    try:
        return time.time() - folder.stat().st_mtime > age
    except OSError:
        return False
