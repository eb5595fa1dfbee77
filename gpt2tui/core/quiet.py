"""Keep library chatter (progress bars, warnings, fork notices) off the terminal.

The CLI prints its own progress and the TUI owns the screen, so transformers/datasets/tokenizers output is
either dropped or sent to a log file. Libraries are imported lazily, so each is quietened where it is first
used; :func:`route_library_logs` decides once where their records go.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

_LIBRARIES = (
    "transformers",
    "datasets",
    "accelerate",
    "huggingface_hub",
    "torch",
    "tokenizers",
    "py.warnings",
)
_state: dict[str, logging.Handler] = {}


def quiet_environment() -> None:
    """Switches that must be set before the libraries are imported."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _handler() -> logging.Handler:
    if "handler" not in _state:
        _state["handler"] = logging.NullHandler()
    return _state["handler"]


def route_library_logs(log_file: Path | None) -> None:
    """Send library loggers and Python warnings to ``log_file`` (or nowhere when ``None``)."""
    quiet_environment()
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    previous = _state.get("handler")
    if previous is not None:
        previous.close()  # a second app in the same process (tests) must not leak the old file
    _state["handler"] = handler
    for name in _LIBRARIES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    logging.captureWarnings(True)
    warnings.simplefilter("default")


def quiet_datasets() -> None:
    """No progress bars or info logs from ``datasets`` (called where it is imported)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    _reroute("datasets")


def quiet_transformers() -> None:
    """transformers installs its own stderr handler on import; replace it with ours."""
    from transformers.utils import logging as tlogging

    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    _reroute("transformers")


def _reroute(name: str) -> None:
    logger = logging.getLogger(name)
    logger.handlers[:] = [_handler()]
    logger.propagate = False
