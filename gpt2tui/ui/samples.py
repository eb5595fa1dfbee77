"""The shipped sample files, shared by the dataset picker (which lists them) and the home screen's
walkthrough (which names the first one), so neither screen imports the other."""

from __future__ import annotations

from pathlib import Path

from gpt2tui.core.data import CSV_SUFFIXES, JSONL_SUFFIXES, TXT_SUFFIXES
from gpt2tui.paths import sample_data_dir

DATA_SUFFIXES = (*TXT_SUFFIXES, *CSV_SUFFIXES, *JSONL_SUFFIXES)
FIRST_SAMPLE = "qa.csv"  # highlighted first: the home screen's walkthrough uses it


def sample_files(start_dir: Path | None) -> list[Path]:
    """The trainable files of the sample folder (``start_dir``'s, else the source checkout's), sorted."""
    folder = sample_data_dir(start_dir)
    if folder is None:
        return []
    files = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    return sorted(p for p in files if not p.name.lower().startswith("readme"))
