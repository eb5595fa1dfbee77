"""Data files the loader used to misread, hang on, or refuse: odd names, special files, valid but unusual text."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from gpt2tui.core.data import DataSpec, inspect_file, load_data
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import train_tokenizer
from gpt2tui.core.packing import Source, pack, split
from tests.conftest import tree_snapshot
from tests.test_data import error_of, write

SUPPORTED = ".txt, .text, .md, .csv, .jsonl"


def refused_unchanged(spec: DataSpec, root: Path) -> str:
    """The error sentence, after checking the refusal wrote nothing under ``root``."""
    before = tree_snapshot(root)
    message = error_of(spec)
    assert tree_snapshot(root) == before
    return message


# ------------------------------------------------------------------------------------- glob characters


@pytest.mark.parametrize(
    ("name", "siblings"),
    [
        ("glob[1].txt", ["glob1.txt"]),
        ("star*.txt", ["starx.txt", "star-more.txt"]),
        ("what?.txt", ["whatx.txt"]),
        ("{a,b}.txt", ["a.txt", "b.txt"]),
        ("[ab].csv", ["a.csv", "b.csv"]),
        ("rows*.jsonl", ["rows-other.jsonl"]),
    ],
)
def test_glob_characters_in_a_name_load_exactly_that_file(
    tmp_path: Path, name: str, siblings: list[str]
) -> None:
    def content(label: str) -> str:
        if name.endswith(".csv"):
            return f"text\n{label}\n"
        if name.endswith(".jsonl"):
            return json.dumps({"text": label}) + "\n"
        return f"{label}\n"

    for sibling in siblings:
        write(tmp_path, sibling, content(f"sibling {sibling}"))
    path = write(tmp_path, name, content("the named file"))
    data = load_data(DataSpec(path))
    assert data.texts() == ["the named file"]
    assert data.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_evaluation_reads_the_named_file_too(tmp_path: Path, tiny_model: str) -> None:
    from gpt2tui.core.evaluation import evaluate_file

    text = "Question: What is at the center of our solar system?\nAnswer: The Sun.\n\n" * 4
    write(tmp_path, "glob1.txt", "A different file with other words entirely.\n" * 40)
    bracket = write(tmp_path, "glob[1].txt", text)
    plain = write(tmp_path, "plain.txt", text)
    assert evaluate_file(tiny_model, DataSpec(bracket), block_size=8) == evaluate_file(
        tiny_model, DataSpec(plain), block_size=8
    )


# ---------------------------------------------------------------------------------------- special files


def finishes(call, seconds: float = 10.0) -> BaseException | None:
    """Run ``call`` in a daemon thread; fail the test if it has not returned after ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    expected = f"{path} is not a regular file (it is a named pipe); choose a {SUPPORTED} file."
    for call in (lambda: load_data(DataSpec(str(path))), lambda: inspect_file(DataSpec(str(path)))):
        err = finishes(call)
        assert isinstance(err, UserError) and str(err) == expected


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_a_device_is_refused(tmp_path: Path, device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    path = tmp_path / "z.txt"
    path.symlink_to(device)
    err = finishes(lambda: load_data(DataSpec(str(path))))
    assert isinstance(err, UserError)
    assert str(err) == (
        f"{path} is not a regular file (it links to a character device); choose a {SUPPORTED} file."
    )


def test_a_link_to_a_regular_file_loads(tmp_path: Path) -> None:
    target = write(tmp_path, "real.txt", "linked text\n")
    (tmp_path / "link.txt").symlink_to(target)
    assert load_data(DataSpec(str(tmp_path / "link.txt"))).texts() == ["linked text"]


def test_a_broken_link_is_no_such_file(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    assert error_of(DataSpec(str(tmp_path / "gone.txt"))) == f"No such file: {tmp_path / 'gone.txt'}."


# ------------------------------------------------------------------------------------ UTF-16 and UTF-32

PARAGRAPHS = "héllo there\n\nsecond paragraph ✓\n"


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_a_byte_order_mark_is_recognised_without_the_option(tmp_path: Path, codec: str) -> None:
    path = write(tmp_path, "wide.txt", PARAGRAPHS.encode(codec))  # Python writes the BOM for utf-16/32
    data = load_data(DataSpec(path))
    assert data.texts() == ["héllo there", "second paragraph ✓"]
    assert data.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("encoding", "raw"),
    [
        ("utf-16", PARAGRAPHS.encode("utf-16")),
        ("utf-16-le", PARAGRAPHS.encode("utf-16-le")),
        ("UTF_16BE", PARAGRAPHS.encode("utf-16-be")),
        ("utf-32-le", PARAGRAPHS.encode("utf-32-le")),
    ],
    ids=["utf-16", "utf-16-le", "UTF_16BE", "utf-32-le"],
)
def test_a_named_wide_encoding_is_decoded_before_the_binary_check(
    tmp_path: Path, encoding: str, raw: bytes
) -> None:
    path = write(tmp_path, "wide.txt", raw)
    assert load_data(DataSpec(path, encoding=encoding)).texts() == ["héllo there", "second paragraph ✓"]


def test_utf16_csv_and_jsonl_load(tmp_path: Path) -> None:
    path = write(tmp_path, "qa.csv", "question,answer\nWhy?,Because ✓.\n".encode("utf-16"))
    assert load_data(DataSpec(path)).texts() == ["Question: Why?\nAnswer: Because ✓."]
    path = write(tmp_path, "t.jsonl", (json.dumps({"text": "wide ✓"}) + "\n").encode("utf-16"))
    assert load_data(DataSpec(path)).texts() == ["wide ✓"]


def test_a_nul_character_in_wide_text_is_still_binary(tmp_path: Path) -> None:
    path = write(tmp_path, "nul.txt", "text\x00more\n".encode("utf-16"))
    assert error_of(DataSpec(path)) == f"{path} looks like a binary file (it contains NUL bytes), not text."


def test_a_utf16_file_trains(tmp_path: Path) -> None:
    from gpt2tui.core.store import ModelStore
    from gpt2tui.core.training import TrainConfig, train

    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n\n" for i in range(60))
    path = write(tmp_path, "wide.txt", text.encode("utf-16"))
    tokenizer = train_tokenizer([text], 300, 64)
    assert len(split(pack(Source(DataSpec(path)), tokenizer), 32, 0.1, 0).train)
    result = train(
        TrainConfig(DataSpec(path), base="scratch", max_steps=2, name="wide", log_every=1),
        store=ModelStore(tmp_path / "models"),
    )
    assert Path(result.path).is_dir()


# --------------------------------------------------------------------------------------- JSON lines


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"], ids=["LS", "PS", "NEL"])
def test_jsonl_strings_may_hold_characters_that_splitlines_splits_on(tmp_path: Path, separator: str) -> None:
    record = json.dumps({"text": f"before{separator}after"}, ensure_ascii=False)
    path = write(tmp_path, "sep.jsonl", f"{record}\r\n{json.dumps({'text': 'second'})}\r\n")
    assert load_data(DataSpec(path)).texts() == [f"before{separator}after", "second"]


def test_jsonl_with_a_duplicated_key_names_the_line_and_the_key(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"line {i} with some words in it"}) for i in range(6)]
    lines[4] = '{"text": "dup one", "text": "dup two"}'
    path = write(tmp_path, "dup.jsonl", "\n".join(lines) + "\n")
    assert refused_unchanged(DataSpec(path), tmp_path) == (
        f"Line 5 of {path} has the key 'text' twice; keep one of them."
    )
    path = write(tmp_path, "nested.jsonl", '{"text": "ok", "meta": {"a": 1, "a": 2}}\n')
    assert error_of(DataSpec(path)) == f"Line 1 of {path} has the key 'a' twice; keep one of them."


def test_jsonl_fields_other_than_the_text_may_vary_in_type(tmp_path: Path) -> None:
    rows = [{"text": "one", "id": 1, "meta": {"x": [1]}}, {"text": "two", "id": "b", "meta": None}]
    path = write(tmp_path, "mixed.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_data(DataSpec(path)).texts() == ["one", "two"]


# ------------------------------------------------------------------------------------------------- CSV


def test_a_csv_field_over_128_kib_loads(tmp_path: Path) -> None:
    long = "word " * 60_000  # 300,000 characters
    path = write(tmp_path, "long.csv", f'id,text\n1,"{long}"\n2,short\n')
    assert inspect_file(DataSpec(path)) == ("csv", ["id", "text"])
    assert load_data(DataSpec(path)).texts() == [long.strip(), "short"]


@pytest.mark.parametrize("content", ["question,answer\n", "question,answer\n\n\n"])
def test_a_csv_with_only_a_header_says_so(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "header.csv", content)
    assert refused_unchanged(DataSpec(path), tmp_path) == (
        f"{path} has a header row but no data rows: there is no text to use."
    )


def test_refusals_leave_no_scratch_files(tmp_path: Path) -> None:
    """The loader's temporary copy is gone after success and after failure."""
    import tempfile

    scratch = Path(tempfile.gettempdir())
    before = {p.name for p in scratch.glob("gpt2tui-datasets-*")}
    path = write(tmp_path, "ok.csv", "text\nfine\n")
    load_data(DataSpec(path))
    blank = write(tmp_path, "blank.csv", 'text\n""\n')
    assert error_of(DataSpec(blank)) == f"{blank} has no non-empty rows: there is no text to use."
    assert {p.name for p in scratch.glob("gpt2tui-datasets-*")} == before


def test_a_csv_header_needs_distinct_names(tmp_path: Path) -> None:
    path = write(tmp_path, "twice.csv", "text,text\na,b\n")
    assert refused_unchanged(DataSpec(path), tmp_path) == (
        f"{path} has the column 'text' twice in its header; rename one of them."
    )
    path = write(tmp_path, "blank.csv", "text,,b\nx,y,z\n")
    assert error_of(DataSpec(path)) == f"Column 2 of the header of {path} has no name; name every column."
