"""Start, stop and resume runs as their own processes, independent of any terminal.

A detached run is a new session (``start_new_session``) with stdin from /dev/null and its output in
``run.log``, so a closing terminal's SIGHUP never reaches it. Several processes go through
``accelerate launch``. The worker entry point (``python -m gpt2tui.worker RUN_FOLDER``) turns SIGTERM and
SIGINT into the stop event (checkpoint, model saved, exit) and ignores SIGHUP.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpt2tui.core.config import TrainConfig
from gpt2tui.core.errors import UserError
from gpt2tui.core.files import write_json_atomic
from gpt2tui.core.runs import Run, claim_name, create_run

WORKER_MODULE = "gpt2tui.worker"
HASH_CHUNK = 1 << 20


def file_digest(path: str) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks (a run's dataset identity)."""
    digest = hashlib.sha256()
    size = 0
    with open(Path(path).expanduser(), "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def create(config: TrainConfig, num_processes: int | None = None, store: Any = None) -> Run:
    """Check everything that can be checked cheaply, then make the run folder and claim the model name.

    Nothing heavy is imported, so ``train --detach`` answers within a second or two; the file's format and
    columns are checked here too, so a bad file is refused before any process starts.
    """
    from gpt2tui.core.data import check_file
    from gpt2tui.core.store import ModelStore
    from gpt2tui.core.training import default_name
    from gpt2tui.paths import check_writable

    config.validate()
    check_file(config.data)
    store = store or ModelStore()
    check_writable(store.root)
    if config.name is not None:
        store.require_free(config.name)
    sha256, size = file_digest(config.data.path)
    path = str(Path(config.data.path).expanduser().resolve())
    resolved = TrainConfig.from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "path": path}})
    record = {
        "schema_version": 1,
        "train": resolved.to_dict(),
        "dataset": {"path": path, "sha256": sha256, "size": size},
        "num_processes": num_processes or 1,
    }
    run = create_run(record)
    try:
        resolved.name = claim_name(run, config.name, default_name(config), store.exists)
    except UserError:
        shutil.rmtree(run.folder, ignore_errors=True)  # a refused run leaves nothing behind
        raise
    write_json_atomic(run.config_path, {**run.config(), "train": resolved.to_dict()})
    return run


def suggest_name(stem: str) -> str:
    """A model name free in the store and among the names live runs will write (``stem``, ``stem-2``…)."""
    from gpt2tui.core.runs import claimed_names
    from gpt2tui.core.store import ModelStore

    store, claimed = ModelStore(), claimed_names()
    return store.unique_name(stem, taken=lambda name: store.exists(name) or name in claimed)


def train_config(run: Run) -> TrainConfig:
    return TrainConfig.from_dict(run.config()["train"])


# ------------------------------------------------------------------------------------------------ spawn


def _has_gpu() -> bool:
    """Without importing torch (seconds): is an NVIDIA driver present?"""
    return Path("/proc/driver/nvidia/version").exists()


def accelerate_config_file() -> Path:
    """Where ``accelerate config`` saves its default file, found as accelerate does but without importing it
    (importing accelerate imports torch: seconds that ``train --detach`` must not spend)."""
    cache = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(cache, "accelerate", "default_config.yaml").expanduser()


def accelerate_config_processes() -> int:
    """Processes asked for by the user's default ``accelerate config`` file (1 when there is none)."""
    try:
        import yaml

        with open(accelerate_config_file(), encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        return max(1, int(data.get("num_processes", 1)))
    except Exception:  # no file, no yaml, a malformed file: one process
        return 1


def worker_command(run: Run, resume: bool) -> tuple[list[str], dict[str, str]]:
    """The command line (and extra environment) that runs this run's worker."""
    processes = int(run.config().get("num_processes") or 1)
    worker = ["-m", WORKER_MODULE, str(run.folder), *(["--resume"] if resume else [])]
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    if processes > 1:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
        launch += ["--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no"]
        if not _has_gpu():
            env["ACCELERATE_USE_CPU"] = "true"  # gloo on the CPU, for tests and CPU-only boxes
        return [*launch, *worker], env
    if accelerate_config_processes() > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", *worker], env
    return [sys.executable, *worker], env


def spawn(run: Run, resume: bool = False) -> int:
    """Start the run's worker in a new session, detached from this terminal; returns its pid."""
    from gpt2tui.core.procs import hostname, start_time

    command, extra_env = worker_command(run, resume)
    with open(run.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(
            command,
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **extra_env},
            close_fds=True,
        )
    # Reap it when it ends, so a long-lived parent (the TUI) keeps no zombie; the run never depends on us.
    threading.Thread(target=process.wait, daemon=True, name=f"reap-{run.id}").start()
    run.write_status(
        state="starting", pid=process.pid, pid_started=start_time(process.pid), hostname=hostname()
    )
    return process.pid


def start_detached(config: TrainConfig, num_processes: int | None = None) -> Run:
    run = create(config, num_processes)
    spawn(run)
    return run


# ---------------------------------------------------------------------------------------- stop and resume


def stop(run: Run) -> None:
    """Ask a live run to stop: it saves a checkpoint and its model, then exits."""
    from gpt2tui.core.procs import signal_process

    status = run.status()
    if not status.live:
        raise UserError(f"Run {run.id} is not running ({status.state}); there is nothing to stop.")
    if not signal_process(status.pid or 0, status.pid_started, signal.SIGTERM):
        raise UserError(f"Run {run.id} is on another machine ({status.hostname}); stop it there.")


def check_resumable(run: Run, force: bool = False) -> TrainConfig:
    """Refuse a live run, a finished run, a run whose data file changed and one whose model name was taken,
    each in one sentence (``force``: a live state recorded by another machine is taken as dead)."""
    from gpt2tui.core.store import ModelStore

    status = run.status()
    if status.live and run.elsewhere(status) and not force:
        raise UserError(run.elsewhere_sentence(status, "resume"))
    if status.live and not run.elsewhere(status):
        raise UserError(f"Run {run.id} is still running (pid {status.pid}); there is nothing to resume.")
    if status.state == "finished":
        raise UserError(f"Run {run.id} has finished; its model is '{status.model}'.")
    record = run.config()
    dataset = record.get("dataset") or {}
    path = str(dataset.get("path", ""))
    try:
        sha256, _ = file_digest(path)
    except OSError:
        raise UserError(f"The dataset of run {run.id} is gone ({path}); it cannot be resumed.") from None
    if sha256 != dataset.get("sha256"):
        raise UserError(
            f"The dataset {path} changed since run {run.id} started; resuming would train on other data, so "
            "start a new run instead."
        )
    config = train_config(run)
    from gpt2tui.core.training import default_name

    if config.name is not None:
        ModelStore().require_free(config.name, run=run.id)
    claim_name(run, config.name, default_name(config), lambda _: False)
    return config


def resume(run: Run, force: bool = False) -> int:
    """Continue a stopped or failed run from its newest complete checkpoint, detached; returns the pid.

    The run's lock is held from the check to the new process's status, so of two resumes at once the
    second sees the first as running."""
    with run.lock(wait=False) as held:
        if not held:
            raise UserError(f"Run {run.id} is still running; there is nothing to resume.")
        check_resumable(run, force)
        return spawn(run, resume=True)


# ------------------------------------------------------------------------------------------------ worker


def stop_on_signals(stop: threading.Event, on_stop: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT set ``stop`` (the loop saves, then ends); a second one acts as usual (Ctrl+C
    raises KeyboardInterrupt, SIGTERM terminates), so a long save can still be abandoned; SIGHUP is ignored."""

    def handler(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if on_stop is not None:
            on_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def recorded_threads(run: Run) -> int | None:
    """The CPU threads the run's first attempt computed with (from its RunStarted event), if recorded."""
    from gpt2tui.core.events import RunStarted

    events, _ = run.events()
    started = [e.event for e in events if isinstance(e.event, RunStarted) and e.event.threads]
    return started[0].threads if started else None


def worker_main(argv: list[str] | None = None) -> int:
    """``python -m gpt2tui.worker RUN_FOLDER [--resume]``: train the run, printing one plain line per event."""
    import argparse

    from gpt2tui.core.device import configure_threads
    from gpt2tui.core.events import PROGRESS_EVENTS, TrainingEvent, describe
    from gpt2tui.core.quiet import quiet_environment, route_library_logs
    from gpt2tui.core.training import train

    def log_line(event: TrainingEvent) -> None:
        if not isinstance(event, PROGRESS_EVENTS):  # run.log: lines that last, not progress
            print(describe(event), flush=True)

    parser = argparse.ArgumentParser(prog="gpt2tui.worker")
    parser.add_argument("folder")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    stop = threading.Event()
    stop_on_signals(stop)
    quiet_environment()
    route_library_logs(None)
    run = Run(Path(args.folder))
    try:
        config = train_config(run)
        # Before torch is imported (OpenMP reads it once). A resume computes with the threads the run began
        # with: another count sums in another order, and the resumed weights would differ in the last bits.
        configure_threads(config.threads or (recorded_threads(run) if args.resume else None))
        train(config, on_event=log_line, stop=stop, run=run, resume=args.resume)
    except UserError as err:
        print(f"gpt2tui: {err}", file=sys.stderr, flush=True)
        return 2
    return 0
