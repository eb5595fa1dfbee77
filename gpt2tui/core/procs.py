"""Is a recorded process still the one we started? A pid plus its start time, so pid reuse never fools us."""

from __future__ import annotations

import os
import signal
import socket

START_TIME_SLACK = 1.0
"""Seconds of disagreement allowed between two readings of one process's start time."""


def hostname() -> str:
    return socket.gethostname()


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), or None when there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return None


def is_alive(pid: int | None, started: float | None) -> bool:
    """True while ``pid`` runs and is the process that started at ``started`` (not a reused pid)."""
    if not pid or pid <= 0:
        return False
    now_started = start_time(pid)
    if now_started is None:
        return False
    if _is_zombie(pid):
        return False
    return started is None or abs(now_started - started) <= START_TIME_SLACK


def _is_zombie(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def signal_process(pid: int, started: float | None, signum: int = signal.SIGTERM) -> bool:
    """Send ``signum`` only if ``pid`` is still the recorded process; False when it is gone."""
    if not is_alive(pid, started):
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
