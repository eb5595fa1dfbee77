"""Every UI message: progress from worker threads (``post_message`` is thread-safe), and the requests that
screens post for the App to act on (the App is the only place that pushes the main screens)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # annotations only: importing the data module is not needed for the first frame
    from gpt2tui.core.data import DatasetSummary, DataSpec
    from gpt2tui.core.generation import GenerationSettings, LoadedModel
    from gpt2tui.core.generator import GeneratorProcess
    from gpt2tui.core.hub import PushResult
    from gpt2tui.core.runs import RecordedEvent, RunStatus

# ------------------------------------------------------------------------------------------ runs


class RunEventsReceived(Message):
    """New complete lines of a run's ``events.jsonl``, oldest first (posted by the run watcher's thread)."""

    def __init__(self, run_id: str, events: list[RecordedEvent]) -> None:
        super().__init__()
        self.run_id = run_id
        self.events = events


class RunsChanged(Message):
    """A run appeared, went away or changed state or step: ``statuses`` holds every run, newest first.

    Only the newest matters, so a queued one is replaced by the next (toolong's ``can_replace``).
    """

    def __init__(self, statuses: dict[str, RunStatus]) -> None:
        super().__init__()
        self.statuses = statuses

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsChanged)


class RunResumed(Message):
    """A resume request was answered: ``error`` is the core's sentence, or None when the run started again."""

    def __init__(self, run_id: str, error: str | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.error = error


class ModelPushed(Message):
    """A push to the Hugging Face Hub ended (posted by its thread): ``result`` on success, else ``error``,
    the core's sentence."""

    def __init__(
        self, name: str, repo_id: str, private: bool, result: PushResult | None, error: str | None
    ) -> None:
        super().__init__()
        self.name = name
        self.repo_id = repo_id
        self.private = private
        self.result = result
        self.error = error


# ------------------------------------------------------------------------------------------ navigation


class NewFinetuneRequested(Message):
    """The user asked for a new fine-tune: the App opens the dataset picker."""


class DatasetChosen(Message):
    """The dataset picker's choice is valid: the App opens the setup for it."""

    def __init__(self, spec: DataSpec, summary: DatasetSummary, block_size: int | None) -> None:
        super().__init__()
        self.spec = spec
        self.summary = summary
        self.block_size = block_size


class RunLaunched(Message):
    """The setup started a run (its own process): the App opens its monitor."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class RunLaunchFailed(Message):
    """The setup's start was refused before any process started: ``error`` is the core's sentence."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class RunOpened(Message):
    """The user picked a run to watch: the App opens its monitor."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id


class MonitorClosed(Message):
    """The user left a run's monitor (the run itself goes on); ``state`` is the run's state then."""

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.state = state


class ChatRequested(Message):
    """The user asked to chat with the stored model ``name``: the App opens the chat."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class DecodingGridRequested(Message):
    """The user asked for ``prompt`` answered by ``model`` under every decoding strategy (the grid), starting
    from ``settings`` (their parameters, max tokens and seed); ``loaded`` is the chat's model, idle, for the
    grid to use rather than load it again."""

    def __init__(
        self,
        model: str,
        prompt: str,
        settings: GenerationSettings,
        loaded: LoadedModel | GeneratorProcess | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.prompt = prompt
        self.settings = settings
        self.loaded = loaded


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
