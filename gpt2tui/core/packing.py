"""Tokenize and pack once: a file's token ids as one memory-mapped array in the cache.

As in nanoGPT's ``prepare.py``, documents are tokenized, each followed by end-of-text, and written as one
stream of ids (uint16 when the vocabulary fits, else uint32); blocks are views of that stream, so every token
of the file is in a block except at most the last partial one, and any block size reads the same entry.
The entry is keyed by the file's sha256, its formatting and the tokenizer, so training, evaluation, the
dataset preview and the setup recount all read what the first of them packed; a second run on an unchanged
file skips loading and tokenizing. A scratch base's tokenizer, trained on the file, is cached the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpt2tui.core.cache import UNLIMITED, Cache
from gpt2tui.core.data import (
    CheckedFile,
    DatasetSummary,
    DataSpec,
    LoadedData,
    check_eval_split,
    check_file,
    load_checked,
)
from gpt2tui.core.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerBase

PACK_VERSION = 1
"""Bumped whenever the packed format or the formatting of rows changes, so old entries are not read."""
TOKENS_FILE = "tokens.bin"
PREVIEW_ROWS = 3
PARALLEL_PACK_CHARS = 32_000_000
"""Files with more characters than this are tokenized in several processes (``num_proc``): below it, starting
the processes costs more than it saves (the fast tokenizer is already multi-threaded)."""
ROWS_PER_WRITE = 10_000


class Source:
    """A checked data file; it is loaded through ``datasets`` only when something must be built from it."""

    def __init__(self, spec: DataSpec, checked: CheckedFile | None = None) -> None:
        self.spec = spec
        self.checked = checked if checked is not None else check_file(spec)
        self._data: LoadedData | None = None

    @property
    def name(self) -> str:
        return str(self.spec.path)

    def data(self) -> LoadedData:
        if self._data is None:
            self._data = load_checked(self.spec, self.checked)
        return self._data

    def key_parts(self) -> list[Any]:
        """What the formatted texts depend on: the bytes, how they are decoded, split and templated."""
        f = self.checked.formatting
        stop = list(f.stop_text) if isinstance(f.stop_text, tuple) else f.stop_text
        return [
            PACK_VERSION,
            self.checked.sha256,
            self.checked.format,
            self.spec.encoding,
            self.spec.txt_split,
            [f.kind, list(f.columns), f.prompt_template, stop],
        ]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the ids: the fast tokenizer's full JSON, or the slow one's vocab."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return _key(type(tokenizer).__name__, body, tokenizer.eos_token_id, len(tokenizer))


# ------------------------------------------------------------------------------------------------ packing


@dataclass
class Packed:
    """A file's token stream (memory-mapped) with what the user is shown about the file."""

    source: Source
    ids: np.ndarray  # 1-D, uint16 or uint32
    rows: int
    characters: int
    preview: list[str]
    sample_prompt: str | None
    cached: bool  # read from the cache rather than packed now
    seconds: float  # packing time (0 when cached)
    key: str = field(default="")

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def format(self) -> str:
        return self.source.checked.format

    @property
    def formatting(self) -> Any:
        return self.source.checked.formatting

    @property
    def sha256(self) -> str:
        return self.source.checked.sha256

    def blocks(self, block_size: int) -> np.ndarray:
        """``[n, block_size]``, a view of the stream (no copy): the last partial block is left out."""
        n = self.tokens // block_size
        return self.ids[: n * block_size].reshape(n, block_size)


def pack(
    source: Source,
    tokenizer: PreTrainedTokenizerBase,
    cache: Cache | None = None,
    use_cache: bool = True,
    num_proc: int | None = None,
    on_pack: Callable[[], None] | None = None,
) -> Packed:
    """The file's tokens from the cache, packing them there first if needed (one packer per key at a time).

    ``use_cache=False`` packs into a temporary folder that is gone when the process ends. ``on_pack`` is called
    when tokenizing starts (not when the cache has the tokens): a big file takes a while, which a command
    should say before it goes quiet."""
    if tokenizer.eos_token_id is None:
        raise UserError("The tokenizer has no end-of-text token, so documents cannot be separated.")
    key = _key(*source.key_parts(), tokenizer_fingerprint(tokenizer))

    def packed_into(store: Cache) -> Packed:
        if on_pack is not None:
            on_pack()
        started = time.perf_counter()
        folder = store.build("tokens", key, lambda f: _write(f, source, tokenizer, num_proc))
        return _read(folder, source, key, False, time.perf_counter() - started)

    if not use_cache:
        with tempfile.TemporaryDirectory(prefix="gpt2tui-pack-") as scratch:
            # The mapping stays valid after the folder is removed (POSIX keeps an open file's data).
            return packed_into(Cache(Path(scratch), limit=UNLIMITED))
    store = cache if cache is not None else Cache()
    found = _cached(store, source, key)
    if found is not None:
        return found
    with store.locked("tokens", key):
        found = _cached(store, source, key)  # another process packed it while this one waited
        return found if found is not None else packed_into(store)


def _cached(store: Cache, source: Source, key: str) -> Packed | None:
    """The entry for ``key`` if it is there and stays there until mapped: ``gpt2tui cache clear`` (or another
    process's trim) may remove it between the lookup and the read, which crashed 16 of 400 reads racing a
    clearing loop (FileNotFoundError); such an entry is a miss, packed again."""
    found = store.lookup("tokens", key)
    if found is None:
        return None
    try:
        return _read(found, source, key, True, 0.0)
    except FileNotFoundError:
        return None


def _dtype_for(tokenizer: PreTrainedTokenizerBase) -> str:
    return "uint16" if len(tokenizer) <= 2**16 else "uint32"


def _write(
    folder: Path, source: Source, tokenizer: PreTrainedTokenizerBase, num_proc: int | None
) -> dict[str, Any]:
    """Tokenize with ``datasets.map(batched=True)`` into Arrow files beside the entry, then stream the ids
    into ``tokens.bin`` a batch at a time, so memory stays bounded by a batch, not the file."""
    import numpy as np
    from datasets import Features, Sequence, Value

    from gpt2tui.core.quiet import quiet_datasets

    quiet_datasets()
    data = source.data()
    eos = tokenizer.eos_token_id
    dtype = _dtype_for(tokenizer)
    characters = data.characters
    procs = num_proc if num_proc is not None else _auto_num_proc(characters, data.rows)

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        return {"input_ids": [[*seq, eos] for seq in ids]}

    arrow = folder / "arrow"
    arrow.mkdir()
    tokenized = data.dataset.map(
        tokenize,
        batched=True,
        remove_columns=data.dataset.column_names,
        features=Features({"input_ids": Sequence(Value(dtype))}),
        num_proc=procs if procs > 1 else None,
        cache_file_name=str(arrow / "tokens.arrow"),
        new_fingerprint=folder.name,
        desc=None,
    )
    count = 0
    with open(folder / TOKENS_FILE, "wb") as out:
        for table in tokenized.with_format("arrow").iter(batch_size=ROWS_PER_WRITE):
            values = table.column("input_ids").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            out.write(np.ascontiguousarray(values, dtype=dtype).tobytes())
            count += len(values)
        out.flush()
        os.fsync(out.fileno())
    del tokenized
    shutil.rmtree(arrow, ignore_errors=True)
    texts = data.dataset.select(range(min(PREVIEW_ROWS, data.rows)))["text"]
    return {
        "source": str(Path(source.spec.path).expanduser().resolve()),
        "sha256": source.checked.sha256,
        "dtype": dtype,
        "tokens": count,
        "rows": data.rows,
        "characters": characters,
        "preview": list(texts),
        "sample_prompt": data.sample_prompt,
        "num_proc": procs,
    }


def _auto_num_proc(characters: int, rows: int) -> int:
    """Several processes only for a large file with enough rows to share, as many as the thread policy gave
    this process (the free cores), at most 8."""
    if characters < PARALLEL_PACK_CHARS or rows < 2 * ROWS_PER_WRITE:
        return 1
    import torch

    return max(1, min(torch.get_num_threads(), 8))


def _read(folder: Path, source: Source, key: str, cached: bool, seconds: float) -> Packed:
    import numpy as np

    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    path = folder / TOKENS_FILE
    if meta["tokens"] == 0:
        ids = np.zeros(0, dtype=meta["dtype"])
    else:
        ids = np.memmap(path, dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))
    return Packed(
        source=source,
        ids=ids,
        rows=meta["rows"],
        characters=meta["characters"],
        preview=list(meta["preview"]),
        sample_prompt=meta["sample_prompt"],
        cached=cached,
        seconds=seconds,
        key=key,
    )


# ------------------------------------------------------------------------------------------------ splits


@dataclass(frozen=True)
class Split:
    """Block indices of the train and held-out sets, in file order."""

    train: np.ndarray
    eval: np.ndarray


def split(packed: Packed, block_size: int, eval_split: float, seed: int) -> Split:
    """Deterministic train/eval split of blocks: at least one of each, eval blocks chosen by ``seed``."""
    import numpy as np

    check_eval_split(eval_split)
    n = packed.tokens // block_size
    if n < 2:
        largest = packed.tokens // 2
        problem = (
            f"{packed.source.name} has {packed.tokens} tokens, which is not enough for one train and one "
            f"eval block of {block_size} tokens"
        )
        if largest < 8:
            raise UserError(f"{problem}; add more text.")
        raise UserError(
            f"{problem}; use --block-size {largest} or less.",
            problem=problem,
            fix="block_size",
            largest=largest,
        )
    n_eval = min(n - 1, max(1, round(n * eval_split)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = np.zeros(n, dtype=bool)
    held[order[:n_eval]] = True
    return Split(train=np.flatnonzero(~held), eval=np.flatnonzero(held))


class BlockRows:
    """Rows of a block array as int64 tensors, read on demand (a map-style dataset for ``DataLoader``)."""

    def __init__(self, blocks: Any, index: Any = None) -> None:
        import numpy as np

        self.blocks = blocks
        self.index = np.arange(len(blocks)) if index is None else np.asarray(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Any:
        import numpy as np
        import torch

        return torch.from_numpy(np.asarray(self.blocks[self.index[i]], dtype=np.int64))


def summarize(
    packed: Packed,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    eval_split: float = 0.1,
    seed: int = 42,
) -> DatasetSummary:
    """Rows, characters, tokens and blocks at ``block_size``, plus the first examples as they will be trained.

    Raises the same too-small error training would, so the user sees it before starting.
    """
    parts = split(packed, block_size, eval_split, seed)
    checked = packed.source.checked
    return DatasetSummary(
        path=packed.source.name,
        format=checked.format,
        kind=checked.formatting.kind,
        columns=list(checked.columns),
        rows=packed.rows,
        characters=packed.characters,
        tokens=packed.tokens,
        block_size=block_size,
        blocks=len(parts.train) + len(parts.eval),
        train_blocks=len(parts.train),
        eval_blocks=len(parts.eval),
        sha256=checked.sha256,
        preview=[t + (tokenizer.eos_token or "") for t in packed.preview],
        sample_prompt=packed.sample_prompt,
    )


# ----------------------------------------------------------------------------------- scratch tokenizers


def scratch_tokenizer(
    source: Source, vocab_size: int, model_max_length: int, cache: Cache | None = None, use_cache: bool = True
) -> PreTrainedTokenizerBase:
    """A BPE tokenizer trained on the file (deterministic), stored in the cache so the preview, the recount
    and every run on the same file reuse it instead of training it again."""
    from gpt2tui.core.models import train_tokenizer

    if not use_cache:
        return train_tokenizer(source.data().texts(), vocab_size, model_max_length)
    store = cache if cache is not None else Cache()
    key = _key(*source.key_parts(), "bpe", vocab_size, model_max_length)
    found = store.lookup("tokenizers", key)
    if found is None:
        with store.locked("tokenizers", key):
            found = store.lookup("tokenizers", key)
            if found is None:

                def write(folder: Path) -> dict[str, Any]:
                    trained = train_tokenizer(source.data().texts(), vocab_size, model_max_length)
                    trained.save_pretrained(str(folder))
                    return {
                        "source": str(Path(source.spec.path).expanduser().resolve()),
                        "sha256": source.checked.sha256,
                    }

                found = store.build("tokenizers", key, write)
    return _load_tokenizer(found)


def _load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    from transformers import PreTrainedTokenizerFast

    from gpt2tui.core.quiet import quiet_transformers

    quiet_transformers()
    return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
