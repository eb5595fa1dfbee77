"""Messages posted from worker threads to the screens (``post_message`` is thread-safe)."""

from __future__ import annotations

from textual.message import Message

from gpt2tui.core.data import DatasetSummary, DataSpec
from gpt2tui.core.events import TrainingEvent


class RunEventReceived(Message):
    """The core's training loop emitted ``event`` (posted from the training thread)."""

    def __init__(self, event: TrainingEvent) -> None:
        super().__init__()
        self.event = event


class PreviewFinished(Message):
    """The dataset preview for ``spec`` finished: ``summary`` on success, else ``error`` (a core sentence).

    ``request`` numbers the preview, so a slow answer to an older choice is ignored.
    """

    def __init__(
        self,
        spec: DataSpec,
        summary: DatasetSummary | None,
        error: str | None,
        file_format: str | None = None,
        columns: list[str] | None = None,
        request: int = 0,
    ) -> None:
        super().__init__()
        self.request = request
        self.spec = spec
        self.summary = summary
        self.error = error
        self.file_format = file_format
        self.columns = columns or []


class HubProbed(Message):
    """The Hugging Face Hub reachability probe answered."""

    def __init__(self, reachable: bool) -> None:
        super().__init__()
        self.reachable = reachable


class DataRecounted(Message):
    """Tokens and blocks of the dataset, counted again with the chosen base's tokenizer and block size."""

    def __init__(self, summary: DatasetSummary | None, error: str | None, request: int) -> None:
        super().__init__()
        self.summary = summary
        self.error = error
        self.request = request
