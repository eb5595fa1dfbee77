"""Where gpt2tui keeps its files: one root, overridable with ``GPT2TUI_HOME`` (tests use it)."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "gpt2tui"
HOME_ENV = "GPT2TUI_HOME"


def data_dir() -> Path:
    """The root of everything gpt2tui stores; created on first use."""
    override = os.environ.get(HOME_ENV)
    if override:
        root = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        root = Path(user_data_dir(APP_NAME, appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Stored models, one ``save_pretrained`` folder each."""
    return _sub("models")


def transcripts_dir() -> Path:
    """Chat transcripts saved as Markdown."""
    return _sub("transcripts")


def logs_dir() -> Path:
    """Library output captured while the TUI runs."""
    return _sub("logs")


def cache_dir() -> Path:
    """The ``datasets`` cache, kept inside our root so one folder holds everything."""
    return _sub("cache")
