"""Where a model comes from: a Hub id, a local ``save_pretrained`` folder, or a new GPT-2 built from scratch.

Hub loading is kept real (users have the Hub) but fails fast: a cached copy loads offline, and otherwise a
short reachability probe runs before transformers' own retries (about 50 s with no network) can start.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from gpt2tui.core.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EOT = "<|endoftext|>"
HUB_EXAMPLES = ("gpt2", "distilgpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
HUB_PROBE_TIMEOUT = 3.0
OFFLINE_CHOICES = "use a local save_pretrained folder (--base PATH) or train a new model (--base scratch)"
BaseKind = Literal["hub", "local", "scratch"]
T = TypeVar("T")


@dataclass(frozen=True)
class ScratchSize:
    """A GPT-2 shape for training from scratch, with the vocabulary size of the BPE trained for it."""

    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    vocab_size: int
    block_size: int  # default training block size
    lr: float  # default learning rate


SCRATCH_SIZES: dict[str, ScratchSize] = {
    # ~0.4M parameters: trains 200 steps in well under a minute on 2 CPU cores.
    "tiny": ScratchSize(
        n_layer=2, n_head=2, n_embd=64, n_positions=256, vocab_size=2048, block_size=128, lr=3e-3
    ),
    # ~14M parameters: a real small model for a GPU or a patient CPU.
    "small": ScratchSize(
        n_layer=6, n_head=6, n_embd=384, n_positions=512, vocab_size=8192, block_size=256, lr=1e-3
    ),
    # The original 124M GPT-2 shape.
    "gpt2": ScratchSize(
        n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257, block_size=512, lr=6e-4
    ),
}
PRETRAINED_LR = 5e-5
PRETRAINED_BLOCK_SIZE = 512


@dataclass
class ResolvedBase:
    """A model and tokenizer ready to train, and where they came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    base: str
    kind: BaseKind
    scratch_size: str | None = None

    @property
    def context_length(self) -> int:
        return context_length(self.model.config)

    @property
    def default_lr(self) -> float:
        return SCRATCH_SIZES[self.scratch_size].lr if self.scratch_size else PRETRAINED_LR

    @property
    def default_block_size(self) -> int:
        size = SCRATCH_SIZES[self.scratch_size].block_size if self.scratch_size else PRETRAINED_BLOCK_SIZE
        return min(size, self.context_length)


def context_length(config: Any) -> int:
    """The model's maximum sequence length (GPT-2 calls it ``n_positions``)."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def base_kind(base: str) -> BaseKind:
    """Scratch, an existing folder, or (anything else) a Hub id."""
    if base == "scratch":
        return "scratch"
    path = Path(base).expanduser()
    if path.is_dir() or base.startswith((".", "/", "~")) or (os.sep in base and path.parent.is_dir()):
        return "local"
    return "hub"


def check_scratch_size(size: str) -> ScratchSize:
    if size not in SCRATCH_SIZES:
        raise UserError(f"Unknown scratch size '{size}'; choose one of {', '.join(SCRATCH_SIZES)}.")
    return SCRATCH_SIZES[size]


# ------------------------------------------------------------------------------------------ tokenizers


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE (GPT-2's scheme) on ``texts``, with ``<|endoftext|>`` as bos/eos/pad/unk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=model_max_length,
    )
    return fast


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """GPT-2 has no pad token; padding (generation batches) uses end-of-text."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ------------------------------------------------------------------------------------------------- hub


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@dataclass
class _Probe:
    started: float
    thread: threading.Thread
    result: list[bool]


_probes: dict[str, _Probe] = {}
_probes_lock = threading.Lock()
PROBE_REUSE_SECONDS = 30.0


def start_hub_probe(timeout: float = HUB_PROBE_TIMEOUT) -> _Probe:
    """Probe the Hub in the background (a recent probe of the same endpoint is reused).

    Training starts it before loading the data, so the answer is usually ready when the base is resolved.
    """
    endpoint = hub_endpoint()
    with _probes_lock:
        probe = _probes.get(endpoint)
        if probe is not None and time.monotonic() - probe.started < PROBE_REUSE_SECONDS:
            return probe
        result: list[bool] = []

        def run() -> None:
            try:
                request = urllib.request.Request(endpoint + "/api/models/gpt2", method="HEAD")
                with urllib.request.urlopen(request, timeout=timeout):
                    result.append(True)
            except urllib.error.HTTPError:
                result.append(True)  # any HTTP answer means the Hub is there
            except Exception:
                result.append(False)

        thread = threading.Thread(target=run, daemon=True, name="gpt2tui-hub-probe")
        probe = _probes[endpoint] = _Probe(time.monotonic(), thread, result)
        thread.start()
        return probe


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether the Hub answers within ``timeout`` seconds of the probe's start (DNS is bounded too)."""
    if hub_offline():
        return False
    probe = start_hub_probe(timeout)
    probe.thread.join(max(0.0, probe.started + timeout - time.monotonic()))
    return bool(probe.result and probe.result[0])


def _from_pretrained(cls: Any, ref: str, **kwargs: Any) -> Any:
    return cls.from_pretrained(ref, trust_remote_code=False, **kwargs)


ATTENTION = "sdpa"
"""Every model computes attention with torch's ``scaled_dot_product_attention`` (flash or memory-efficient
kernels on a GPU, one fused op on a CPU). transformers already defaults to it where a model supports it; it
is asked for by name so that stays true whatever the default becomes. It is a runtime choice, not saved
with the model (``model.config._attn_implementation`` says what a loaded model uses)."""


def _load_pair(ref: str, local_only: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Weights in fp32 whatever dtype they were saved in: training in pure fp16 diverges, and mixed
    precision (autocast) is accelerate's job."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpt2tui.core.quiet import quiet_transformers

    quiet_transformers()
    tokenizer = _from_pretrained(AutoTokenizer, ref, local_files_only=local_only)
    options = {"local_files_only": local_only, "use_safetensors": True, "dtype": torch.float32}
    try:
        model = _from_pretrained(AutoModelForCausalLM, ref, attn_implementation=ATTENTION, **options)
    except ValueError as err:
        if "scaled_dot_product_attention" not in str(err):
            raise
        # An architecture without SDPA support: transformers' own choice (eager attention) still works.
        model = _from_pretrained(AutoModelForCausalLM, ref, **options)
    return model, tokenizer


def load_hub(base: str, choices: str = OFFLINE_CHOICES) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a Hub model: the local cache first, then a download if the Hub answers the probe; ``choices``
    ends the sentence when it cannot be had (what else the user can do where the model was named)."""
    return _from_hub(base, lambda local_only: _load_pair(base, local_only), choices)


def hub_metadata_folder(base: str) -> Path | None:
    """The folder holding a Hub model's ``gpt2tui.json`` (a model pushed by gpt2tui has one: its prompt template,
    stop text and block size), from the cache or else downloaded; None when the repository has none or the Hub
    cannot be reached (the model then loads as a plain one)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from gpt2tui.core.store import META_FILE

    try:
        cached = try_to_load_from_cache(base, META_FILE)
    except Exception:  # an id the cache cannot even name
        return None
    if isinstance(cached, str):
        return Path(cached).parent
    if cached is not None or not hub_reachable():  # cached as missing, or no way to ask
        return None
    try:
        return Path(hf_hub_download(base, META_FILE)).parent
    except Exception:  # not in the repository (a model not made by gpt2tui), or the download failed
        return None


def hub_cached(base: str) -> bool:
    """Whether the Hub cache holds ``base`` (looked up on disk only)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(base, "config.json"), str)
    except Exception:  # an id the cache cannot even name
        return False


@contextmanager
def _hub_offline() -> Iterator[None]:
    """No network at all while loading from the cache (huggingface_hub may otherwise phone home)."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _from_hub(base: str, load: Callable[[bool], T], choices: str = OFFLINE_CHOICES) -> T:
    """Run ``load(local_only)`` against the cache, then (if the Hub answers quickly) against the Hub."""
    if hub_cached(base):
        try:
            with _hub_offline():
                return load(True)
        except (OSError, ValueError):
            pass  # an incomplete cache entry: download what is missing
    if not hub_reachable():
        raise UserError(
            f"Could not download '{base}': the Hugging Face Hub cannot be reached and it is not in the "
            f"local cache; offline, {choices}."
        )
    try:
        return load(False)
    except Exception as err:
        name = type(err).__name__
        if "NotFound" in name or "not a valid model identifier" in str(err) or "404" in str(err):
            raise UserError(
                f"'{base}' is not a model on the Hugging Face Hub; check the id (for example "
                f"{' or '.join(HUB_EXAMPLES[:2])}), or {choices}."
            ) from None
        raise UserError(
            f"Could not download '{base}' from the Hugging Face Hub ({name}); {choices}."
        ) from None


@dataclass
class TokenizerInfo:
    """A base's tokenizer and sizes, enough to count tokens and blocks before any weights load."""

    tokenizer: PreTrainedTokenizerBase
    context_length: int
    default_block_size: int


def resolve_tokenizer(
    base: str, scratch_size: str = "tiny", scratch: Callable[[ScratchSize], Any] | None = None
) -> TokenizerInfo:
    """The tokenizer training would use; for scratch, ``scratch(shape)`` gives the one trained on the data."""
    from gpt2tui.core.quiet import quiet_transformers

    quiet_transformers()
    kind = base_kind(base)
    if kind == "scratch":
        shape = check_scratch_size(scratch_size)
        if scratch is None:
            raise ValueError("scratch needs a tokenizer trained on the data")
        return TokenizerInfo(scratch(shape), shape.n_positions, shape.block_size)

    def load(local_only: bool) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoTokenizer

        return (
            _from_pretrained(AutoTokenizer, base, local_files_only=local_only),
            _from_pretrained(AutoConfig, base, local_files_only=local_only),
        )

    if kind == "local":
        load_local_check(base)
        tokenizer, config = load(True)
    else:
        tokenizer, config = _from_hub(base, load)
    ctx = context_length(config)
    return TokenizerInfo(_prepare_tokenizer(tokenizer), ctx, min(PRETRAINED_BLOCK_SIZE, ctx))


SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
RESAVE = "save it with save_pretrained(safe_serialization=True)"
READ_FIRST = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)
"""Files transformers may read besides the weights, checked for readability when present."""


def load_local_check(folder: str) -> Path:
    """The folder, if it holds a config and safetensors weights that can all be read.

    The one gate before transformers sees a local folder (training bases, stored models, checkpoints): an
    index may name any file, and transformers would ``torch.load`` (unpickle) one that is not safetensors.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"No model folder at {folder}.")
    if not (path / "config.json").is_file():
        raise UserError(f"{folder} is not a model folder: it has no config.json.")
    weights = _weight_files(path, folder)
    for file in [*(path / name for name in READ_FIRST), *weights]:
        if file.is_file():
            _check_readable(file)
    return path


def _weight_files(path: Path, folder: str) -> list[Path]:
    """``model.safetensors``, or the shards a safetensors index names (each checked to be one)."""
    index = path / SAFE_INDEX
    shards = _index_shards(index, path) if index.is_file() else []  # transformers skips non-files too
    if (path / SAFE_WEIGHTS).is_file():
        return [path / SAFE_WEIGHTS, *shards]
    if shards:
        return shards
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{folder} has no .safetensors weights; {RESAVE}.")
    raise UserError(f"{folder} has no {SAFE_WEIGHTS} or {SAFE_INDEX}; {RESAVE}.")


def _index_shards(index: Path, path: Path) -> list[Path]:
    """The files an index's ``weight_map`` names: .safetensors files directly inside ``path`` that exist."""
    _check_readable(index)
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{index} is not valid JSON; {RESAVE}.") from None
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index} has no weight_map; {RESAVE}.")
    shards: list[Path] = []
    for name in dict.fromkeys(weight_map.values()):
        if not isinstance(name, str) or not name.endswith(".safetensors"):
            raise UserError(
                f"{index} names {name!r} as a weights file, but only .safetensors weights are loaded; {RESAVE}."
            )
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise UserError(f"{index} names {name!r}, which is not a file name inside {path}; {RESAVE}.")
        if not (path / name).is_file():
            raise UserError(f"{index} names {name!r}, which is not in {path}; {RESAVE}.")
        shards.append(path / name)
    return shards


def _check_readable(file: Path) -> None:
    """Open and close ``file`` so an unreadable one is named (transformers reports it as missing)."""
    try:
        os.close(os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except PermissionError:
        raise UserError(
            f"{file} cannot be read: permission denied; give your user read access to it."
        ) from None
    except OSError as err:
        raise UserError(f"{file} cannot be read: {(err.strerror or str(err)).lower()}.") from None


def load_local(folder: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a ``save_pretrained`` folder with safetensors weights."""
    path = load_local_check(folder)
    try:
        return _load_pair(str(path), local_only=True)
    except UserError:
        raise
    except Exception as err:
        raise UserError(
            f"Could not load the model in {folder}: {str(err).splitlines()[0] if str(err) else err!r}."
        ) from None


# ----------------------------------------------------------------------------------------------- scratch


def build_scratch(
    texts: Iterable[str] | None,
    size: str,
    seed: int,
    n_positions: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A new GPT-2 of ``size`` with a BPE tokenizer trained on ``texts``, or ``tokenizer`` when one was
    already trained on them (the cache keeps it); ``n_positions``: another context length than the size's,
    for benchmarks of long replies."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2tui.core.quiet import quiet_transformers

    quiet_transformers()
    shape = check_scratch_size(size)
    positions = n_positions or shape.n_positions
    if tokenizer is None:
        if texts is None:
            raise ValueError("scratch needs the training texts or a tokenizer trained on them")
        tokenizer = train_tokenizer(texts, shape.vocab_size, positions)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        attn_implementation=ATTENTION,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config), tokenizer


def resolve_base(
    base: str,
    texts: Iterable[str] | None = None,
    scratch_size: str = "tiny",
    seed: int = 42,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> ResolvedBase:
    """Load or build the starting model; scratch needs the training ``texts`` or a tokenizer trained on them."""
    kind = base_kind(base)
    if kind == "scratch":
        model, tokenizer = build_scratch(texts, scratch_size, seed, tokenizer=tokenizer)
    elif kind == "local":
        model, tokenizer = load_local(base)
    else:
        model, tokenizer = load_hub(base)
    _prepare_tokenizer(tokenizer)
    align_vocab(model, tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.eos_token_id
    return ResolvedBase(model, tokenizer, base, kind, scratch_size if kind == "scratch" else None)


def align_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embedding matrix when the tokenizer knows more tokens than the model has rows for."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer))


def load_model(ref_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a stored or local model for inference."""
    return prepare_for_inference(*load_local(str(ref_path)))


def prepare_for_inference(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Eval mode, on the GPU when there is one, with a pad token for batches."""
    import torch

    _prepare_tokenizer(tokenizer)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer


def count_parameters(model: PreTrainedModel) -> int:
    return sum(p.numel() for p in model.parameters())
