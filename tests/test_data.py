"""Dataset loading and validation errors (packing: test_packing.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2tui.core.data import QA_STOP_TEXT, DataSpec, inspect_file, load_data
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import train_tokenizer
from tests.conftest import KJV_TXT, QA_CSV, SAMPLES


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([KJV_TXT.read_text()[:50_000], QA_CSV.read_text()], 512, 256)


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def error_of(spec: DataSpec) -> str:
    with pytest.raises(UserError) as info:
        load_data(spec)
    return str(info.value)


# ------------------------------------------------------------------------------------------------- formats


def test_txt_is_split_on_blank_lines_or_kept_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "first doc\nline two\n\nsecond doc\n\n\nthird\n")
    assert load_data(DataSpec(path)).texts() == ["first doc\nline two", "second doc", "third"]
    whole = load_data(DataSpec(path, txt_split="file"))
    assert whole.rows == 1 and "second doc" in whole.texts()[0]


def test_sample_files_load() -> None:
    kjv = load_data(DataSpec(str(KJV_TXT)))
    assert kjv.format == "txt" and kjv.rows == 50 and kjv.texts()[0].startswith("Genesis 1")
    qa = load_data(DataSpec(str(QA_CSV)))
    assert qa.formatting.kind == "qa" and qa.rows >= 50
    assert qa.formatting.stop_text == QA_STOP_TEXT
    prompts = load_data(DataSpec(str(SAMPLES / "prompts.jsonl")))
    assert prompts.formatting.kind == "prompt-completion" and prompts.rows >= 40
    notes = load_data(DataSpec(str(SAMPLES / "notes.jsonl")))
    assert notes.formatting.kind == "text" and notes.rows >= 30


def test_csv_question_answer_uses_the_template(tmp_path: Path) -> None:
    path = write(tmp_path, "qa.csv", 'question,answer\n"What, exactly?",Forty-two.\nEmpty,\n')
    data = load_data(DataSpec(path))
    assert data.texts() == [
        "Question: What, exactly?\nAnswer: Forty-two."
    ]  # the row without an answer is dropped
    assert data.formatting.prompt_template == "Question: {prompt}\nAnswer:"


def test_csv_text_column_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "id,body,q,a\n1,hello there,who?,me\n")
    assert load_data(DataSpec(path, text_column="body")).texts() == ["hello there"]
    pair = load_data(DataSpec(path, question_column="q", answer_column="a"))
    assert pair.texts() == ["Question: who?\nAnswer: me"]


def test_column_options_that_contradict_each_other_or_the_file_are_refused(tmp_path: Path) -> None:
    """Silently, a text column with an answer column trained on the text alone; a .txt file's was ignored."""
    path = write(tmp_path, "t.csv", "id,body,q,a\n1,hello there,who?,me\n")
    assert error_of(DataSpec(path, text_column="body", answer_column="a")) == (
        "--text-column cannot go with --answer-column: train on one text column, or on question and answer "
        "columns."
    )
    txt = write(tmp_path, "t.txt", "hello there\n")
    assert error_of(DataSpec(txt, text_column="body")) == (
        f"{txt} is a plain text file with no columns, so --text-column does not apply to it."
    )


def test_csv_without_needed_columns_lists_its_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", "name,score\nann,3\n")
    assert error_of(DataSpec(path)) == (
        f"{path} has no 'text' column and no 'question'/'answer' or 'prompt'/'completion' pair "
        "(its columns are: name, score); choose columns with --text-column or --question-column/--answer-column."
    )
    assert (
        error_of(DataSpec(path, text_column="body"))
        == f"{path} has no 'body' column (its columns are: name, score)."
    )
    assert error_of(DataSpec(path, question_column="name")) == (
        f"{path} has no 'answer' column (its columns are: name, score)."
    )


def test_jsonl_prompt_completion_is_concatenated(tmp_path: Path) -> None:
    lines = [{"prompt": "2+2 =", "completion": " 4"}, {"prompt": "3+3 =", "completion": " 6"}]
    path = write(tmp_path, "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert load_data(DataSpec(path)).texts() == ["2+2 = 4", "3+3 = 6"]


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "m.jsonl", '{"text": "ok"}\n\n{"text": "broken"\n')
    assert (
        error_of(DataSpec(path))
        == f"Line 3 of {path} is not valid JSON: Expecting ',' delimiter (column 18)."
    )
    path = write(tmp_path, "n.jsonl", '{"text": "ok"}\n[1, 2]\n')
    assert error_of(DataSpec(path)) == f"Line 2 of {path} is not a JSON object."
    path = write(tmp_path, "f.jsonl", '{"text": "ok"}\n{"body": "no text"}\n')
    assert error_of(DataSpec(path)) == f"Line 2 of {path} has no 'text' field."


def test_jsonl_values_must_be_text(tmp_path: Path) -> None:
    path = write(tmp_path, "v.jsonl", '{"text": "hello there"}\n{"text": 5}\n')
    assert error_of(DataSpec(path)) == f"Line 2 of {path} has a number in 'text', not text."
    path = write(tmp_path, "w.jsonl", '{"text": "fine"}\n{"text": null}\n{"text": "123"}\n')
    assert load_data(DataSpec(path)).texts() == ["fine", "123"]  # null rows dropped, strings stay strings


def test_malformed_csv_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "question,answer\nok,fine\na,b,c\n")
    assert error_of(DataSpec(path)) == (
        f"Line 3 of {path} has 3 fields but the header has 2; quote fields that contain commas."
    )
    path = write(tmp_path, "q.csv", 'text\n"unclosed\nmore\n')
    assert error_of(DataSpec(path)) == f"Line 3 of {path} is not valid CSV: unexpected end of data."


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert error_of(DataSpec(str(tmp_path / "nope.txt"))) == f"No such file: {tmp_path / 'nope.txt'}."
    assert (
        error_of(DataSpec(str(tmp_path)))
        == f"{tmp_path} is a directory; choose a .txt, .text, .md, .csv, .jsonl file."
    )


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "data.parquet", "x")
    assert error_of(DataSpec(path)) == (
        f"{path} has an unsupported type '.parquet'; use a .txt, .text, .md, .csv, .jsonl file."
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "is empty: there is no text to use."),
        (" \n\t\n  ", "contains only whitespace: there is no text to use."),
    ],
)
def test_empty_and_whitespace_files(tmp_path: Path, content: str, reason: str) -> None:
    path = write(tmp_path, "e.txt", content)
    assert error_of(DataSpec(path)) == f"{path} {reason}"


def test_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path, "b.txt", b"PK\x03\x04\x00\x00binary")
    assert error_of(DataSpec(path)) == f"{path} looks like a binary file (it contains NUL bytes), not text."


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_named_with_its_option(tmp_path: Path, codec: str) -> None:
    """It was called binary, with no hint that --encoding reads it."""
    path = write(tmp_path, "u.txt", "Hello UTF16 world\n\nPara two\n".encode(codec))
    assert error_of(DataSpec(path)) == (
        f"{path} looks like {codec} text without a byte-order mark (every other byte is NUL); "
        f"pass --encoding {codec}."
    )
    assert load_data(DataSpec(path, encoding=codec)).texts() == ["Hello UTF16 world", "Para two"]


def test_non_utf8_names_the_encoding_option(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.txt", "caf\xe9 au lait\n\nna\xefve\n".encode("latin-1"))
    assert error_of(DataSpec(path)) == (
        f"{path} is not valid utf-8 text (byte 0xe9 at offset 3); if it uses another encoding, "
        "pass it with --encoding, e.g. --encoding latin-1."
    )
    assert load_data(DataSpec(path, encoding="latin-1")).texts() == ["café au lait", "naïve"]
    assert error_of(DataSpec(path, encoding="klingon")) == (
        "Unknown encoding 'klingon'; use a Python codec name such as utf-8 or latin-1."
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", "\ufefftext\nhello\n".encode())
    assert load_data(DataSpec(path)).texts() == ["hello"]


def test_inspect_file_reports_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "a,b\n1,2\n")
    assert inspect_file(DataSpec(path)) == ("csv", ["a", "b"])
    path = write(tmp_path, "j.jsonl", '{"x": 1}\n{"y": 2}\n')
    assert inspect_file(DataSpec(path)) == ("jsonl", ["x", "y"])


def test_sample_prompt_is_in_the_datas_own_format() -> None:
    assert load_data(DataSpec(str(QA_CSV))).sample_prompt == "What is at the center of our solar system?"
    prompts = load_data(DataSpec(str(SAMPLES / "prompts.jsonl")))
    assert prompts.sample_prompt == "Translate to French: cat\nFrench:"
    assert load_data(DataSpec(str(KJV_TXT))).sample_prompt == "Genesis 1 1 In the beginning God created"
