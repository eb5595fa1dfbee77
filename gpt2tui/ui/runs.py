"""The run watcher: one thread tails every run's ``events.jsonl`` and tells the App what changed.

Runs are their own processes, so the TUI only reads their folders. The shape is toolong's poll watcher: a
single thread, a saved byte offset per file, a short sleep between polls, and one message per batch of new
lines (never one per line), so a fast run costs the UI a few messages a second. Every run is read from
offset 0 first, which is how a monitor opened later (or after the TUI was restarted) shows the whole history.

The App keeps what the watcher reports in a :class:`RunBook` (on the UI thread, so no locks are needed).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path

from textual.message_pump import MessagePump

from gpt2tui.core.events import END_EVENTS
from gpt2tui.core.runs import RecordedEvent, Run, RunStatus, list_runs, remove_leftovers, runs_root
from gpt2tui.ui.messages import RunEventsReceived, RunsChanged

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""Seconds between reads of the event files (the appended lines are the live progress)."""
STATUS_EVERY = 4
"""Polls between status reads (about once a second): ``status.json`` and, for a live run, its process."""


class RunWatcher(threading.Thread):
    """Polls ``root`` (the runs folder) and posts :class:`RunEventsReceived` and :class:`RunsChanged`."""

    def __init__(self, target: MessagePump, root: Path | None = None, poll_seconds: float = POLL_SECONDS):
        super().__init__(name="gpt2tui-run-watcher", daemon=True)
        self.target = target
        self.root = root or runs_root()
        self.poll_seconds = poll_seconds
        self.offsets: dict[str, int] = {}
        self.statuses: dict[str, RunStatus] = {}
        self._status_stamps: dict[str, int] = {}  # status.json mtime_ns of a run that is not live
        self._force_statuses = False
        self._stopping = threading.Event()
        self._wake = threading.Event()

    def run(self) -> None:
        try:
            remove_leftovers(self.root)  # half-written checkpoints of processes that are gone
        except OSError:
            log.exception("could not remove leftover run files")
        polls = 0
        while not self._stopping.is_set():
            try:
                self.poll(read_statuses=polls % STATUS_EVERY == 0)
            except Exception:  # a folder removed mid-read, a full disk...: the next poll tries again
                log.exception("the run watcher's poll failed")
            polls += 1
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def poll_now(self) -> None:
        """Poll (statuses included) without waiting: after a start, stop, resume or removal."""
        self._force_statuses = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=2)

    def poll(self, read_statuses: bool = True) -> None:
        """Read what each run appended since the last poll; read statuses when asked or when runs changed."""
        runs = list_runs(self.root)
        ids = [run.id for run in runs]
        changed_set = set(ids) != set(self.offsets)
        for gone in set(self.offsets) - set(ids):
            del self.offsets[gone]
            self._status_stamps.pop(gone, None)
        ended = False
        for run in runs:
            events, offset = run.events(self.offsets.get(run.id, 0))
            self.offsets[run.id] = offset
            if events:
                ended = ended or any(isinstance(r.event, END_EVENTS) for r in events)
                self.target.post_message(RunEventsReceived(run.id, events))
        if read_statuses or changed_set or ended or self._force_statuses:
            self._force_statuses = False
            statuses = {run.id: self.read_status(run) for run in runs}
            if statuses != self.statuses:
                self.statuses = statuses
                self.target.post_message(RunsChanged(dict(statuses)))

    def read_status(self, run: Run) -> RunStatus:
        """The run's status; a run that is not live is read again only when its ``status.json`` changed."""
        try:
            stamp = run.status_path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        known = self.statuses.get(run.id)
        if known is not None and not known.live and self._status_stamps.get(run.id) == stamp:
            return known
        status = run.status()
        if not status.live:
            self._status_stamps[run.id] = stamp
        return status


class RunBook:
    """What the App knows of every run: its whole recorded history and its latest status."""

    def __init__(self) -> None:
        self.history: dict[str, list[RecordedEvent]] = {}
        self.statuses: dict[str, RunStatus] = {}

    def add_events(self, run_id: str, events: list[RecordedEvent]) -> None:
        self.history.setdefault(run_id, []).extend(events)

    def set_statuses(self, statuses: dict[str, RunStatus]) -> None:
        self.statuses = statuses
        for gone in set(self.history) - set(statuses):
            del self.history[gone]

    def events(self, run_id: str) -> list[RecordedEvent]:
        return list(self.history.get(run_id, ()))


def run_folder(run_id: str) -> Run:
    """The run with this id in the data home's runs folder."""
    return Run(runs_root() / run_id)


def updated_at(status: RunStatus) -> float | None:
    """``status.updated`` as seconds since the epoch, or None when missing or malformed."""
    try:
        return datetime.fromisoformat(status.updated or "").timestamp()
    except ValueError:
        return None


def resume_error(run_id: str) -> str | None:
    """Resume a stopped or failed run as its own process; the core's refusal sentence, or None on success.

    Call it from a thread worker: the check hashes the dataset file.
    """
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.launch import resume

    try:
        resume(run_folder(run_id))
    except UserError as err:
        return str(err)
    except OSError as err:
        return f"Could not resume run {run_id}: {err.strerror or err}."
    return None


def stop_error(run_id: str) -> str | None:
    """Ask a live run to stop (SIGTERM: it saves a checkpoint and its model, then exits); a sentence if not."""
    from gpt2tui.core.errors import UserError
    from gpt2tui.core.launch import stop

    try:
        stop(run_folder(run_id))
    except UserError as err:
        return str(err)
    return None
