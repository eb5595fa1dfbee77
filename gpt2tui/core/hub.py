"""Pushing a stored model to the Hugging Face Hub, with its card, through ``huggingface_hub``.

Everything that can be checked here is checked before anything leaves the machine (the model, the repository
id, the token, the network), so a refusal changes nothing anywhere. The token is read from ``HF_TOKEN`` or the
user's saved login and handed to ``huggingface_hub`` only: it is never part of a message, a log record or a
file this module writes (it writes none). The reachability probe and the endpoint are the ones training uses
(``gpt2tui.core.models``), so ``HF_ENDPOINT`` points both at the same place.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from gpt2tui.core.errors import UserError

REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID_RE = re.compile(rf"^(?P<owner>{REPO_PART})/(?P<name>{REPO_PART})$")
REPO_ID_RULE = (
    "use OWNER/NAME, each of letters, digits, '-', '_' or '.', at most 96 characters, starting and ending with "
    "a letter or digit (for example alice/qa-tiny)"
)
NOT_UPLOADED = (
    ".*",  # hidden files: a save, rename or evaluation in progress stages its files as .NAME.tmp
    "**/.*",
    "*.bin",  # pickled weights run code when loaded: only safetensors leave the machine
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.ckpt",
)
LOGIN_HINT = "set HF_TOKEN or log in with 'hf auth login'"
PUBLIC_HINT = "push with --public"
"""How the CLI asks for a public upload; the home screen's dialog says it its own way (``push_model``)."""


@dataclass(frozen=True)
class PushResult:
    """What a push did, for the CLI to print and the home screen to show."""

    model: str
    repo_id: str
    url: str
    private: bool
    created: bool  # the push created the repository (else it existed)
    files: tuple[str, ...]
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}

    def summary(self, asked_private: bool) -> str:
        """``pushed NAME to URL (a new private repository; 9 files, commit 1a2b3c4d)``: what the CLI prints
        and the home screen shows; an existing repository keeps its visibility, and says so when it differs
        from the one asked for."""
        if self.created:
            visibility = f"a new {'private' if self.private else 'public'} repository"
        elif self.private != asked_private:
            visibility = "an existing private repository; its visibility was not changed"
        else:
            visibility = f"an existing {'private' if self.private else 'public'} repository"
        commit = f", commit {self.commit[:8]}" if self.commit else ""
        return f"pushed {self.model} to {self.url} ({visibility}; {len(self.files)} files{commit})"


def validate_repo_id(repo_id: str) -> str:
    """Refuse what the Hub would refuse, before any request (names with '--' or '..' included)."""
    if not REPO_ID_RE.fullmatch(repo_id or "") or "--" in repo_id or ".." in repo_id:
        from gpt2tui.core.store import printable

        raise UserError(f"'{printable(repo_id)}' is not a Hugging Face repository id; {REPO_ID_RULE}.")
    return repo_id


def hub_token() -> str | None:
    """``HF_TOKEN``, else the token saved by ``hf auth login`` (huggingface_hub's own lookup)."""
    from huggingface_hub import get_token

    return get_token()


def push_model(name: str, repo_id: str, private: bool = True, public_hint: str = PUBLIC_HINT) -> PushResult:
    """Upload the stored model ``name`` (weights, tokenizer, card, metadata) to ``repo_id`` in one commit.

    A new repository is private unless ``private`` is False. An existing public repository is refused while
    ``private`` is asked for, so the default never publishes a model by surprise; ``public_hint`` completes
    that sentence with the caller's way of asking for public ("push with --public").
    """
    from gpt2tui.core.models import hub_endpoint, hub_offline, hub_reachable
    from gpt2tui.core.store import ModelStore

    info = ModelStore().get(name)
    validate_repo_id(repo_id)
    files = upload_list(info.path)
    if not any(file.endswith(".safetensors") for file in files):
        raise UserError(
            f"The model '{name}' has no safetensors weights to push; only safetensors are uploaded."
        )
    token = hub_token()
    if not token:
        raise UserError(f"No Hugging Face token was found; {LOGIN_HINT}, then push again.")
    endpoint = hub_endpoint()
    if hub_offline():
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it and push again.")
    if not hub_reachable():
        raise UserError(
            f"The Hugging Face Hub ({endpoint}) cannot be reached; check the network and push again "
            "(nothing was uploaded)."
        )
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    created = False
    try:
        existing = _repo_private(api, repo_id)
        if existing is False and private:
            raise UserError(
                f"The repository {repo_id} already exists and is public; {public_hint} to upload to it, "
                "or choose another repository (nothing was uploaded)."
            )
        if existing is None:
            api.create_repo(repo_id, private=private, exist_ok=True)
            created = True
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=info.path,
            commit_message=f"Upload {name} with gpt2tui",
            ignore_patterns=list(NOT_UPLOADED),
        )
    except UserError:
        raise
    except Exception as err:
        raise UserError(_failure_sentence(err, repo_id, endpoint, created)) from None
    return PushResult(
        model=name,
        repo_id=repo_id,
        url=f"{endpoint}/{repo_id}",
        private=private if existing is None else existing,
        created=created,
        files=tuple(files),
        commit=getattr(commit, "oid", None),
    )


def upload_list(folder: Any) -> list[str]:
    """The files a push uploads, relative to the model folder, in a stable order."""
    from huggingface_hub.utils import filter_repo_objects

    found = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return list(filter_repo_objects(found, ignore_patterns=list(NOT_UPLOADED)))


def _repo_private(api: Any, repo_id: str) -> bool | None:
    """Whether the repository is private; None when it does not exist (or this token cannot see it)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return bool(api.model_info(repo_id).private)
    except RepositoryNotFoundError:
        return None


def _failure_sentence(err: Exception, repo_id: str, endpoint: str, created: bool) -> str:
    """One sentence for a refused or broken request: the HTTP status when there is one, never the error's
    own text (it may quote request details)."""
    state = (
        f"the repository {repo_id} was created but holds none of the files (the upload is one commit); push again"
        if created
        else "nothing was uploaded"
    )
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return f"The Hugging Face Hub refused the token (401 Unauthorized); {LOGIN_HINT} with a valid token ({state})."
    if status == 403:
        owner = repo_id.split("/")[0]
        return f"The token may not write to '{owner}' on the Hugging Face Hub (403 Forbidden); use a token with write access ({state})."
    if isinstance(status, int):
        return f"The Hugging Face Hub answered HTTP {status} while pushing to {repo_id} ({state})."
    if _is_network_error(err):
        return f"The connection to the Hugging Face Hub ({endpoint}) failed while pushing to {repo_id} ({state})."
    if isinstance(err, ValueError) and "README.md" in str(err):
        return f"The Hugging Face Hub refused the model card's metadata (README.md) ({state})."
    return f"Pushing to {repo_id} failed: {type(err).__name__} ({state})."


def _is_network_error(err: BaseException) -> bool:
    """A transport failure of whichever HTTP client huggingface_hub uses (httpx or requests)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return isinstance(err, OSError) or bool(
        names & {"TransportError", "ConnectionError", "Timeout", "TimeoutException", "RequestError"}
    )
