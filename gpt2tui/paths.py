"""Where gpt2tui keeps its files: one root, overridable with ``GPT2TUI_HOME`` (tests use it).

Folders are created only by the code that writes into them, so reading (listing models, validating a bad
file) never changes the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpt2tui.core.errors import UserError

APP_NAME = "gpt2tui"
HOME_ENV = "GPT2TUI_HOME"


def data_dir() -> Path:
    """The root of everything gpt2tui stores (not created here)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) for writing, or say in one sentence why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"Cannot create the folder {path} ({err.strerror or err}); set {HOME_ENV} to a writable folder."
        ) from None
    return path


def check_writable(path: Path) -> Path:
    """Create ``path`` and prove a file can be written there, before any long work depends on it."""
    import uuid

    ensure_dir(path)
    probe = path / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"Cannot write to {path} ({err.strerror or err}); set {HOME_ENV} to a writable folder."
        ) from None
    return path


def runs_dir() -> Path:
    """One folder per fine-tune run: config, event log, status, checkpoints and the process's log."""
    return data_dir() / "runs"


def models_dir() -> Path:
    """Stored models, one ``save_pretrained`` folder each."""
    return data_dir() / "models"


def transcripts_dir() -> Path:
    """Chat transcripts saved as Markdown (created)."""
    return ensure_dir(data_dir() / "transcripts")


def screenshots_dir() -> Path:
    """SVG screenshots of the TUI (ctrl+p, Screenshot) (created)."""
    return ensure_dir(data_dir() / "screenshots")


def logs_dir() -> Path:
    """Library output captured while the TUI runs (created)."""
    return ensure_dir(data_dir() / "logs")


SAMPLE_DIR = "sample_data"


def sample_data_dir(start: Path | None = None) -> Path | None:
    """The sample files: ``sample_data/`` under ``start`` (the working directory), else the one shipped in
    the source checkout gpt2tui runs from (the README's editable install); None when neither exists."""
    for candidate in (
        (start or Path.cwd()) / SAMPLE_DIR,
        Path(__file__).resolve().parent.parent / SAMPLE_DIR,
    ):
        if candidate.is_dir():
            return candidate
    return None
