"""A run folder: ``config.json``, ``events.jsonl``, ``status.json``, ``checkpoints/`` and ``run.log``.

The folder is the run's whole public face: the CLI, the TUI and a re-opened TUI read only these files, so a
run started anywhere (a detached process, the foreground CLI, another machine's shared disk) looks the same.
Only the run's main process writes them. A run whose process is gone without writing an end state is
reported as failed, with pid reuse ruled out by comparing the process start time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from gpt2tui.core.errors import UserError
from gpt2tui.core.events import END_EVENTS, TrainingEvent, event_from_dict, event_to_dict, known_event
from gpt2tui.core.files import write_json_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
EVENTS_FILE = "events.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = "run.log"
CHECKPOINTS = "checkpoints"
BEST_DIR = "best"
NAMES_DIR = ".names"  # one claim file per model name a run will write: <name> holding the run id

LOCK_WAIT_SECONDS = 30.0
LIVE_STATES = ("starting", "running", "stopping")
RESUME_ADVICE = "resume it with `gpt2tui runs resume {run}`"
"""How a failure sentence ends for the CLI; the TUI says its own key instead (``ui.wording.failure_in_app``)."""
DIED = "the training process ended without saving its state; " + RESUME_ADVICE


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunStatus:
    """``status.json``: what a run is doing now (rewritten atomically by the run's main process)."""

    run: str
    state: str = "starting"  # starting | running | stopping | stopped | finished | failed
    pid: int | None = None
    pid_started: float | None = None  # the process start time, so a reused pid is not taken for the run
    hostname: str | None = None
    step: int = 0
    total_steps: int | None = None
    model: str | None = None
    updated: str | None = None
    last_eval_loss: float | None = None
    message: str | None = None  # the failure sentence, for a failed run
    checkpoint_step: int | None = None  # the newest complete checkpoint (where a resume starts)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class RecordedEvent:
    """One line of ``events.jsonl``: the event with its run id, sequence number and wall-clock time."""

    run: str
    seq: int
    time: float
    event: TrainingEvent


def read_events(path: Path, offset: int = 0) -> tuple[list[RecordedEvent], int]:
    """Complete event lines from byte ``offset``; returns them and the offset after the last whole line.

    A last line without its newline (a process killed mid-write) is left for the next read; a malformed
    line or an event type this version does not know is skipped, so a newer writer never breaks a reader.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        recorded = _parse_line(line)
        if recorded is not None:
            events.append(recorded)
    return events, offset + end + 1


def _parse_line(line: bytes) -> RecordedEvent | None:
    try:
        data = json.loads(line)
        if not isinstance(data, dict) or not known_event(data.get("event")):
            return None
        event = event_from_dict(data)
        return RecordedEvent(
            str(data.get("run", "")), int(data.get("seq", 0)), float(data.get("time", 0)), event
        )
    except (ValueError, TypeError, KeyError):
        log.warning("skipped an unreadable event line: %.200r", line)
        return None


def _last_seq(path: Path) -> int:
    """The highest sequence number in the log, whatever its event types (a newer writer's included)."""
    seq = 0
    try:
        with open(path, "rb") as handle:
            for line in handle:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    seq = max(seq, int(json.loads(line).get("seq", 0)))
    except FileNotFoundError:
        pass
    return seq


class EventLog:
    """Appends events as JSON lines, one flushed line each; a resumed run continues the numbering."""

    def __init__(self, path: Path, run: str) -> None:
        self.path = path
        self.run = run
        self._trim_partial_line()
        self.seq = _last_seq(path)
        self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def _trim_partial_line(self) -> None:
        """A killed writer may have left half a line; cut it so the next event starts on its own line."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        _, whole = read_events(self.path)
        if whole < size:
            os.truncate(self.path, whole)

    def append(self, event: TrainingEvent) -> RecordedEvent:
        self.seq += 1
        recorded = RecordedEvent(self.run, self.seq, time.time(), event)
        line = {"run": self.run, "seq": self.seq, "time": round(recorded.time, 3), **event_to_dict(event)}
        self._handle.write(json.dumps(line, allow_nan=True) + "\n")
        self._handle.flush()
        return recorded

    def close(self) -> None:
        self._handle.close()


class Run:
    """One run folder; reading never writes, except :meth:`write_status` by the run's own process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.id = folder.name

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def events_path(self) -> Path:
        return self.folder / EVENTS_FILE

    @property
    def status_path(self) -> Path:
        return self.folder / STATUS_FILE

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / CHECKPOINTS

    @property
    def best_dir(self) -> Path:
        return self.folder / BEST_DIR

    def config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"Run {self.id} has no readable {CONFIG_FILE}; it cannot be resumed.") from None
        return data if isinstance(data, dict) else {}

    def recorded_status(self) -> RunStatus:
        """``status.json`` as written (a dead process may have left a live state in it)."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
            return RunStatus.from_dict(data) if isinstance(data, dict) else RunStatus(self.id)
        except (OSError, ValueError, TypeError):
            return RunStatus(self.id, state="failed", message="its status.json is missing or unreadable")

    def status(self) -> RunStatus:
        """The status, with a live state whose process is gone on this machine reported as failed."""
        from gpt2tui.core.procs import hostname, is_alive

        status = self.recorded_status()
        if not status.live or status.hostname not in (None, hostname()):
            return status
        if is_alive(status.pid, status.pid_started):
            return status
        return dataclasses.replace(status, state="failed", message=DIED.format(run=self.id))

    def is_alive(self) -> bool:
        return self.status().live

    def elsewhere(self, status: RunStatus) -> bool:
        """A live state recorded by another machine: this one cannot check that process."""
        from gpt2tui.core.procs import hostname

        return status.live and status.hostname not in (None, hostname())

    def elsewhere_sentence(self, status: RunStatus, verb: str) -> str:
        return (
            f"Run {self.id} was last seen {status.state} on {status.hostname} (pid {status.pid}, updated "
            f"{status.updated}); {verb} it there, or add --force if that machine or process is gone."
        )

    @contextlib.contextmanager
    def lock(self, wait: bool = True, timeout: float = LOCK_WAIT_SECONDS) -> Iterator[bool]:
        """Hold the run's lock (the folder itself, with flock): its process holds it for its whole life, and
        a resume or removal holds it while it checks and acts, so two of them never both go ahead. Yields
        whether the lock was taken (always True when ``wait``, unless ``timeout`` passed)."""
        fd = os.open(self.folder, os.O_RDONLY)
        deadline = time.monotonic() + (timeout if wait else 0)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    def write_status(self, **changes: Any) -> RunStatus:
        current = self.recorded_status() if self.status_path.exists() else RunStatus(self.id)
        status = dataclasses.replace(current, **changes, updated=now_iso())
        write_json_atomic(self.status_path, status.to_dict(), sync=False)  # rewritten every log step
        return status

    def events(self, offset: int = 0) -> tuple[list[RecordedEvent], int]:
        return read_events(self.events_path, offset)

    def summary(self) -> dict[str, Any]:
        """What ``runs list --json`` prints for this run."""
        status = self.status()
        return {
            "run": self.id,
            "state": status.state,
            "step": status.step,
            "total_steps": status.total_steps,
            "pid": status.pid,
            "hostname": status.hostname,
            "model": status.model,
            "updated": status.updated,
            "last_eval_loss": status.last_eval_loss,
            "checkpoint_step": status.checkpoint_step,
            "message": status.message,
            "folder": str(self.folder),
        }


# ------------------------------------------------------------------------------------------- the runs folder


def runs_root() -> Path:
    from gpt2tui.paths import runs_dir

    return runs_dir()


def new_run_id() -> str:
    """Sortable by start time, unique across processes started in the same second."""
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def create_run(config: dict[str, Any], root: Path | None = None) -> Run:
    """A new run folder holding ``config`` and a ``starting`` status owned by this process."""
    from gpt2tui.core.procs import hostname, start_time
    from gpt2tui.paths import check_writable

    root = check_writable(root or runs_root())
    while True:
        folder = root / new_run_id()
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    run = Run(folder)
    write_json_atomic(run.config_path, {**config, "run": run.id, "created": now_iso()})
    run.write_status(
        run=run.id,
        state="starting",
        pid=os.getpid(),
        pid_started=start_time(os.getpid()),
        hostname=hostname(),
    )
    return run


def list_runs(root: Path | None = None) -> list[Run]:
    """Every run folder, newest first (run ids sort by start time)."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    folders = [
        f for f in root.iterdir() if f.is_dir() and not f.name.startswith(".") and (f / CONFIG_FILE).exists()
    ]
    return [Run(f) for f in sorted(folders, key=lambda f: f.name, reverse=True)]


def get_run(ref: str, root: Path | None = None) -> Run:
    """A run by its id or a unique prefix of it."""
    runs = list_runs(root)
    exact = [r for r in runs if r.id == ref]
    matches = exact or [r for r in runs if ref and r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"No run '{ref}'; 'gpt2tui runs list' shows the runs.")
    raise UserError(f"'{ref}' matches {len(matches)} runs; give more of the run id.")


def remove_run(run: Run, force: bool = False) -> None:
    """Delete a run folder that no process is writing (its model, if saved, stays in the store)."""
    with run.lock(wait=False) as held:
        status = run.status()
        if not held or (status.live and not (force and run.elsewhere(status))):
            if run.elsewhere(status):
                raise UserError(run.elsewhere_sentence(status, "remove"))
            raise UserError(
                f"Run {run.id} is still running; stop it first with `gpt2tui runs stop {run.id}`."
            )
        trash = run.folder.with_name(f".trash-{run.id}-{secrets.token_hex(4)}")
        os.rename(run.folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    release_names(run.id, run.folder.parent)


def remove_leftovers(root: Path | None = None) -> None:
    """Half-deleted run folders and checkpoints half-written by processes that are gone."""
    from gpt2tui.core.checkpoints import remove_partial

    root = root or runs_root()
    if not root.is_dir():
        return
    for folder in root.glob(".trash-*"):
        shutil.rmtree(folder, ignore_errors=True)
    for run in list_runs(root):
        if not run.is_alive():
            remove_partial(run.checkpoints_dir)
            for leftover in [*run.folder.glob(".*.tmp"), *run.best_dir.glob(".*.tmp")]:
                leftover.unlink(missing_ok=True)


# --------------------------------------------------------------------------------- model names owned by runs


@contextlib.contextmanager
def _names_lock(root: Path) -> Iterator[Path]:
    names = root / NAMES_DIR
    names.mkdir(parents=True, exist_ok=True)
    fd = os.open(names, os.O_RDONLY)  # the folder itself is the lock: no lock file is left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield names
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _owner(names: Path, name: str, root: Path) -> str | None:
    """The run that claimed ``name`` and may still write it (live, stopped or failed, so resumable), or
    None once that run has finished or been removed."""
    try:
        run_id = (names / name).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = root / run_id
    if not folder.is_dir() or Run(folder).status().state == "finished":
        return None
    return run_id


def name_owner(name: str, root: Path | None = None) -> Run | None:
    """The run that will (or may, once resumed) write the model ``name``, if any."""
    root = root or runs_root()
    owner = _owner(root / NAMES_DIR, name, root)
    return Run(root / owner) if owner else None


def owner_error(run: Run, name: str, what: str = "--name") -> UserError:
    """Why ``name`` is taken by ``run``: choose another ``what`` (the caller's word for the name it asked for)."""
    status = run.status()
    if status.live:
        problem = f"The run {run.id} is training a model named '{name}'"
        advice = f"choose another {what}."
    else:
        problem = f"The run {run.id} ({status.state}) will write a model named '{name}' when it is resumed"
        advice = f"choose another {what} or remove that run with `gpt2tui runs rm {run.id}`."
    return UserError(
        f"{problem}; {advice}", problem=problem, fix="name_claimed", run=run.id, live=status.live
    )


def claimed_names(root: Path | None = None) -> set[str]:
    """Model names that live runs will write (a suggestion must avoid them as well as the store's)."""
    root = root or runs_root()
    names = root / NAMES_DIR
    if not names.is_dir():
        return set()
    return {claim.name for claim in names.iterdir() if _owner(names, claim.name, root) is not None}


def claim_name(run: Run, requested: str | None, stem: str, taken: Any) -> str:
    """Reserve the model name this run will write, so no two live runs write one name.

    ``requested`` is the user's ``--name`` (refused when a live run owns it); otherwise ``stem``, then
    ``stem-2``, ``stem-3``... until neither ``taken(name)`` (the store) nor a live run holds it.
    """
    root = run.folder.parent
    with _names_lock(root) as names:
        if requested is not None:
            owner = _owner(names, requested, root)
            if owner is not None and owner != run.id:
                raise owner_error(Run(root / owner), requested)
            name = requested
        else:
            name, n = stem, 1
            while taken(name) or _owner(names, name, root) not in (None, run.id):
                n += 1
                name = f"{stem}-{n}"
        (names / name).write_text(run.id, encoding="utf-8")
    return name


def follow_rename(old: str, new: str, root: Path | None = None) -> None:
    """The model ``old`` is now ``new``: the runs that wrote it (or will, once resumed) say so.

    Each such run's ``config.json`` and ``status.json`` get the new name, and its claim moves with it, so
    that resuming a stopped run saves to the renamed model (it made a second copy under the old name),
    chatting from its monitor opens it, and the run lists show it. Call only when no live run writes ``old``
    (:func:`renaming_refused`). Its events keep the old name: they are the record of what happened.
    """
    root = root or runs_root()
    if not root.is_dir():
        return
    with _names_lock(root) as names:
        for run in list_runs(root):
            try:
                record = run.config()
            except UserError:
                continue
            train = record.get("train")
            if not isinstance(train, dict) or train.get("name") != old:
                continue
            write_json_atomic(run.config_path, {**record, "train": {**train, "name": new}})
            if run.recorded_status().model == old:
                run.write_status(model=new)
            claim = names / old
            with contextlib.suppress(OSError):
                if claim.read_text(encoding="utf-8").strip() == run.id:
                    os.replace(claim, names / new)


def renaming_refused(name: str, root: Path | None = None) -> UserError | None:
    """Why the model ``name`` cannot be renamed now (a live run is writing it), or None."""
    owner = name_owner(name, root)
    if owner is None or not owner.status().live:
        return None
    return UserError(
        f"The run {owner.id} is training the model '{name}'; rename it once the run has ended (or stop it)."
    )


def release_names(run_id: str, root: Path) -> None:
    names = root / NAMES_DIR
    if not names.is_dir():
        return
    for claim in names.iterdir():
        with contextlib.suppress(OSError):
            if claim.read_text(encoding="utf-8").strip() == run_id:
                claim.unlink()


# ------------------------------------------------------------------------------- the writer, in the run


class RunRecorder:
    """The run process's side: every event goes to ``events.jsonl`` and moves ``status.json`` along."""

    def __init__(self, run: Run) -> None:
        from gpt2tui.core.procs import hostname, start_time

        self.run = run
        self._lock = run.lock()
        if not self._lock.__enter__():
            self._lock.__exit__(None, None, None)
            raise UserError(f"Run {run.id} is being written by another process; there is nothing to do here.")
        self.log = EventLog(run.events_path, run.id)
        run.write_status(
            state="starting",
            pid=os.getpid(),
            pid_started=start_time(os.getpid()),
            hostname=hostname(),
            message=None,
        )

    def __call__(self, event: TrainingEvent) -> None:
        from gpt2tui.core import events as ev

        self.log.append(event)
        if isinstance(event, ev.RunStarted):
            self.run.write_status(
                state="running", total_steps=event.total_steps, model=event.name, step=event.resumed_from
            )
        elif isinstance(event, ev.StepLogged):
            self.run.write_status(step=event.step, total_steps=event.total_steps)
        elif isinstance(event, ev.EvalFinished):
            self.run.write_status(last_eval_loss=event.loss, step=event.step)
        elif isinstance(event, ev.CheckpointSaved):
            self.run.write_status(checkpoint_step=event.step, step=event.step)
        elif isinstance(event, ev.RunStopping):
            self.run.write_status(state="stopping", step=event.step)
        elif isinstance(event, ev.RunFinished):
            self.run.write_status(state="stopped" if event.stopped else "finished", step=event.steps)
        elif isinstance(event, ev.RunFailed):
            self.run.write_status(state="failed", message=event.message)

    def close(self) -> None:
        self.log.close()
        self._lock.__exit__(None, None, None)


def follow(
    run: Run,
    on_event: Callable[[RecordedEvent], None],
    stop: threading.Event,
    poll_seconds: float = 0.2,
) -> RunStatus:
    """Replay a run's events from the start, then follow new ones until the run ends or ``stop`` is set.

    Returns the status at the end (a process that died without an end event reads as failed).
    """
    offset = 0
    while True:
        events, offset = run.events(offset)
        for recorded in events:
            on_event(recorded)
        status = run.status()
        if any(isinstance(r.event, END_EVENTS) for r in events) and not status.live:
            return status
        if not status.live:
            events, offset = run.events(offset)  # written between the two reads
            for recorded in events:
                on_event(recorded)
            return status
        if stop.wait(poll_seconds):
            return status
