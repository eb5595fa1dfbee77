"""Tokenize and pack once: the memory-mapped token cache, its keys, cap and command, splits and summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt2tui.core.cache import COMPLETE, LIMIT_ENV, Cache, limit_bytes
from gpt2tui.core.data import DataSpec, load_data
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import train_tokenizer
from gpt2tui.core.packing import BlockRows, Source, pack, scratch_tokenizer, split, summarize
from tests.conftest import KJV_TXT, QA_CSV, cli, tree_snapshot


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([KJV_TXT.read_text()[:50_000], QA_CSV.read_text()], 512, 256)


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def expected_stream(path: str, tokenizer, **spec) -> list[int]:  # type: ignore[no-untyped-def]
    """The reference: every formatted text tokenized on its own, end-of-text after each, concatenated."""
    texts = load_data(DataSpec(path, **spec)).texts()
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [i for seq in ids for i in (*seq, tokenizer.eos_token_id)]


def test_every_token_is_kept_in_order_with_end_of_text(tmp_path: Path, tokenizer) -> None:
    path = write(tmp_path, "docs.txt", "alpha beta gamma\n\ndelta epsilon\n\nzeta eta theta iota\n")
    packed = pack(Source(DataSpec(path)), tokenizer)
    flat = expected_stream(path, tokenizer)
    assert packed.ids.tolist() == flat and flat.count(tokenizer.eos_token_id) == 3
    blocks = packed.blocks(4)
    assert blocks.shape == (len(flat) // 4, 4) and blocks.ravel().tolist() == flat[: len(flat) // 4 * 4]
    assert packed.ids.dtype == np.uint16 and not packed.cached


def test_the_remainder_is_carried_across_batches(tmp_path: Path, tokenizer) -> None:
    """25,000 paragraphs (more than two 10,000-row batches): only the last partial block is left out."""
    path = write(tmp_path, "many.txt", "".join(f"verse {i} and it was so\n\n" for i in range(25_000)))
    packed = pack(Source(DataSpec(path)), tokenizer)
    flat = expected_stream(path, tokenizer)
    assert packed.tokens == len(flat)
    blocks = packed.blocks(100)
    assert len(blocks) == len(flat) // 100 and np.array_equal(
        blocks.ravel(), np.array(flat[: len(blocks) * 100])
    )


def test_several_processes_pack_the_same_stream(tmp_path: Path, tokenizer) -> None:
    path = write(tmp_path, "many.txt", "".join(f"line {i} of the file\n\n" for i in range(3_000)))
    one = pack(Source(DataSpec(path)), tokenizer, use_cache=False, num_proc=1)
    two = pack(Source(DataSpec(path)), tokenizer, use_cache=False, num_proc=2)
    assert np.array_equal(one.ids, two.ids) and one.tokens == len(expected_stream(path, tokenizer))


def test_a_vocabulary_beyond_uint16_is_stored_as_uint32(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", "hello zz65599 world\n\nzz3 again\n")
    tokenizer = train_tokenizer(["hello world again"] * 10, 300, 64)
    tokenizer.add_tokens([f"zz{i}" for i in range(65_600)])
    packed = pack(Source(DataSpec(path)), tokenizer)
    assert packed.ids.dtype == np.uint32 and int(packed.ids.max()) >= 2**16
    assert packed.ids.tolist() == expected_stream(path, tokenizer)


def test_a_second_pack_reads_the_cache_without_loading_the_file(
    tmp_path: Path, tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "docs.txt", "one two three\n\nfour five six\n")
    missed: list[str] = []
    first = pack(Source(DataSpec(path)), tokenizer, on_pack=lambda: missed.append("miss"))
    assert missed == ["miss"]

    def not_again(*args: object) -> None:
        raise AssertionError("the file was loaded again although its tokens are cached")

    monkeypatch.setattr("gpt2tui.core.packing.load_checked", not_again)
    said: list[str] = []  # a command says "tokenizing …" only when it really tokenizes
    second = pack(Source(DataSpec(path)), tokenizer, on_pack=lambda: said.append("hit"))
    assert said == []
    monkeypatch.undo()
    pack(Source(DataSpec(path)), tokenizer, use_cache=False, on_pack=lambda: said.append("uncached"))
    assert said == ["uncached"]
    assert second.cached and second.key == first.key and np.array_equal(second.ids, first.ids)
    assert (second.rows, second.characters, second.preview) == (2, 26, ["one two three", "four five six"])


def test_the_key_follows_the_bytes_the_formatting_and_the_tokenizer(tmp_path: Path, tokenizer) -> None:
    path = write(tmp_path, "docs.txt", "one two three\n\nfour five six\n")
    keys = {pack(Source(DataSpec(path)), tokenizer).key}
    keys.add(pack(Source(DataSpec(path, txt_split="file")), tokenizer).key)
    keys.add(pack(Source(DataSpec(path)), train_tokenizer(["one two three four"] * 5, 280, 64)).key)
    Path(path).write_text("one two three\n\nfour five seven\n", encoding="utf-8")
    changed = pack(Source(DataSpec(path)), tokenizer)
    keys.add(changed.key)
    assert len(keys) == 4 and not changed.cached
    assert changed.ids.tolist() == expected_stream(path, tokenizer)


def test_without_the_cache_nothing_is_stored(tmp_path: Path, tokenizer, home: Path) -> None:
    path = write(tmp_path, "docs.txt", "one two three\n\nfour five six\n")
    packed = pack(Source(DataSpec(path)), tokenizer, use_cache=False)
    assert packed.ids.tolist() == expected_stream(path, tokenizer)
    assert not (home / "cache").exists()


def test_the_cap_removes_the_least_recently_used_entry_never_the_new_one(tmp_path: Path, tokenizer) -> None:
    cache = Cache(tmp_path / "cache", limit=1)  # smaller than any entry
    a = write(tmp_path, "a.txt", "first file\n")
    b = write(tmp_path, "b.txt", "second file\n")
    first = pack(Source(DataSpec(a)), tokenizer, cache=cache)
    assert [e.key for e in cache.entries()] == [first.key]
    second = pack(Source(DataSpec(b)), tokenizer, cache=cache)
    assert [e.key for e in cache.entries()] == [second.key]
    assert first.ids.tolist() == expected_stream(a, tokenizer)  # a mapping outlives its removed entry


def test_a_failed_build_leaves_no_entry_and_a_leftover_is_replaced(tmp_path: Path, tokenizer) -> None:
    cache = Cache(tmp_path / "cache")

    def broken(folder: Path) -> dict[str, object]:
        (folder / "tokens.bin").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        cache.build("tokens", "k", broken)
    assert cache.lookup("tokens", "k") is None and not list((tmp_path / "cache" / "tokens").iterdir())
    (tmp_path / "cache" / "tokens" / "k").mkdir()  # a crash after the rename's target appeared, unmarked
    assert cache.lookup("tokens", "k") is None
    folder = cache.build("tokens", "k", lambda f: {"tokens": 0})
    assert (folder / COMPLETE).is_file() and cache.lookup("tokens", "k") == folder


def test_an_entry_removed_between_lookup_and_read_is_packed_again(tmp_path: Path, tokenizer) -> None:
    """``cache clear`` racing a reader: the entry still marked complete, its token file already gone."""
    path = write(tmp_path, "docs.txt", "one two three\n\nfour five six\n")
    cache = Cache(tmp_path / "cache")
    first = pack(Source(DataSpec(path)), tokenizer, cache=cache)
    (cache.path("tokens", first.key) / "tokens.bin").unlink()
    again = pack(Source(DataSpec(path)), tokenizer, cache=cache)
    assert not again.cached and again.ids.tolist() == expected_stream(path, tokenizer)


def test_clear_removes_a_killed_builds_folder_at_once_and_never_a_live_ones(tmp_path: Path) -> None:
    """Age said nothing: a live build's folder keeps its creation time, a killed one's stood for an hour."""
    cache = Cache(tmp_path / "cache")
    tokens = tmp_path / "cache" / "tokens"
    killed = tokens / ".tmp-aaaa-12345678"
    killed.mkdir(parents=True)
    seen: dict[str, bool] = {}

    def slow(folder: Path) -> dict[str, object]:
        old = time.time() - 7200  # two hours into a big file's pack
        os.utime(folder, (old, old))
        cache.clear()
        seen["live kept"] = folder.is_dir()
        seen["killed removed"] = not killed.exists()
        return {"tokens": 0}

    with cache.locked("tokens", "bbbb"):
        cache.build("tokens", "bbbb", slow)
    assert seen == {"live kept": True, "killed removed": True}
    assert cache.lookup("tokens", "bbbb") is not None


def test_two_processes_packing_one_file_pack_it_once(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, "docs.txt", "".join(f"paragraph {i} of many\n\n" for i in range(2_000)))
    script = (
        "import sys; from gpt2tui.core.data import DataSpec; from gpt2tui.core.models import train_tokenizer;"
        "from gpt2tui.core.packing import Source, pack;"
        "t = train_tokenizer(['paragraph of many'] * 5, 280, 64);"
        f"p = pack(Source(DataSpec({path!r})), t); print('cached' if p.cached else 'packed', p.tokens)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        outputs = sorted(p.communicate(timeout=120)[0].split()[0] for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert outputs == ["cached", "packed"]
    assert len(Cache().entries()) == 1


def test_split_is_deterministic_with_one_block_each_at_least(tokenizer) -> None:
    packed = pack(Source(DataSpec(str(QA_CSV))), tokenizer)
    a, b = split(packed, 32, 0.1, 7), split(packed, 32, 0.1, 7)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.eval, b.eval)
    n = packed.tokens // 32
    assert sorted([*a.train, *a.eval]) == list(range(n)) and len(a.eval) == round(n * 0.1)
    two = split(packed, packed.tokens // 2, 0.01, 0)
    assert (len(two.train), len(two.eval)) == (1, 1)


def test_too_small_dataset_names_the_largest_block_size(tmp_path: Path, tokenizer) -> None:
    path = write(tmp_path, "small.txt", "In the beginning God created the heaven and the earth.\n")
    packed = pack(Source(DataSpec(path)), tokenizer)
    with pytest.raises(UserError) as info:
        split(packed, 128, 0.1, 0)
    largest = packed.tokens // 2
    assert str(info.value) == (
        f"{path} has {packed.tokens} tokens, which is not enough for one train and one eval block of 128 "
        f"tokens; use --block-size {largest} or less."
    )
    parts = split(packed, largest, 0.1, 0)
    assert len(parts.train) == len(parts.eval) == 1


def test_eval_split_must_be_a_fraction(tokenizer) -> None:
    packed = pack(Source(DataSpec(str(QA_CSV))), tokenizer)
    for bad in (0.0, 1.0, -0.5, 2):
        with pytest.raises(UserError, match=r"^--eval-split must be between 0 and 1 \(exclusive\), not "):
            split(packed, 32, bad, 0)


def test_summary_shows_examples_as_trained(tokenizer) -> None:
    summary = summarize(pack(Source(DataSpec(str(QA_CSV))), tokenizer), tokenizer, 64, 0.1)
    assert summary.format == "csv" and summary.kind == "qa" and summary.columns == ["question", "answer"]
    assert summary.blocks == summary.train_blocks + summary.eval_blocks == summary.tokens // 64
    assert summary.preview[0].startswith("Question: ") and summary.preview[0].endswith("<|endoftext|>")
    assert len(summary.preview) == 3 and len(summary.sha256) == 64


def test_block_rows_are_int64_rows_of_the_view(tokenizer) -> None:
    blocks = pack(Source(DataSpec(str(QA_CSV))), tokenizer).blocks(16)
    rows = BlockRows(blocks, [3, 1])
    assert len(rows) == 2 and rows[0].dtype.is_floating_point is False
    assert rows[0].tolist() == blocks[3].tolist() and str(rows[1].dtype) == "torch.int64"


def test_a_scratch_tokenizer_is_trained_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "docs.txt", "".join(f"the {i} words of the file\n\n" for i in range(200)))
    first = scratch_tokenizer(Source(DataSpec(path)), 300, 64)
    monkeypatch.setattr("gpt2tui.core.models.train_tokenizer", lambda *a: pytest.fail("trained again"))
    again = scratch_tokenizer(Source(DataSpec(path)), 300, 64)
    assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    assert again("the 7 words").input_ids == first("the 7 words").input_ids


def test_a_bad_cap_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT_ENV, "lots")
    with pytest.raises(UserError, match=rf"^{LIMIT_ENV} must be a number of gigabytes, not 'lots'\.$"):
        limit_bytes()
    monkeypatch.setenv(LIMIT_ENV, "0.5")
    assert limit_bytes() == 500_000_000
    for unlimited in ("inf", "1e400"):  # an OverflowError ("Unexpected error") in every command before
        monkeypatch.setenv(LIMIT_ENV, unlimited)
        assert limit_bytes() == 2**62
    monkeypatch.setenv(LIMIT_ENV, "nan")
    with pytest.raises(UserError, match=rf"^{LIMIT_ENV} must be 0 or more, not nan\.$"):
        limit_bytes()


def test_cache_list_and_clear_commands(tmp_path: Path, tokenizer, home: Path) -> None:
    empty = cli("cache")
    assert empty.returncode == 0
    assert empty.stdout.strip() == (
        f"The cache in {home / 'cache'} is empty; training, eval and the dataset preview fill it."
    )
    path = write(tmp_path, "docs.txt", "one two three\n\nfour five six\n")
    packed = pack(Source(DataSpec(path)), tokenizer)
    listed = json.loads(cli("cache", "list", "--json").stdout)
    assert [(e["kind"], e["key"], e["tokens"], e["source"]) for e in listed] == [
        ("tokens", packed.key, packed.tokens, str(Path(path).resolve()))
    ]
    models = home / "models"
    models.mkdir(parents=True)
    (models / "keep.txt").write_text("not the cache's")
    before = tree_snapshot(models)
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0 and cleared.stdout.startswith("removed 1 cache entry (")
    assert Cache().entries() == [] and tree_snapshot(models) == before
