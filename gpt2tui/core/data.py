"""Datasets: validate a file, load it with ``datasets``, format rows as text (``packing`` tokenizes them).

Every check that can fail on user input runs before anything is written, and fails with one
:class:`UserError` sentence.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gpt2tui.core.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset

TXT_SUFFIXES = (".txt", ".text", ".md")
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl",)
SUPPORTED = ", ".join((*TXT_SUFFIXES, *CSV_SUFFIXES, *JSONL_SUFFIXES))

QA_TEMPLATE = "Question: {question}\nAnswer: {answer}"
"""How a question/answer row is written for training; the end-of-text token follows it."""
QA_PROMPT_TEMPLATE = "Question: {prompt}\nAnswer:"
"""What a Q/A-trained model is given at generation time (``{prompt}`` is the user's text)."""
QA_STOP_TEXT = ("\nQuestion:", "\nAnswer:")
"""Where a Q/A model's answer ends if it does not emit end-of-text: a new turn of either kind."""

TxtSplit = Literal["paragraphs", "file"]
Kind = Literal["text", "qa", "prompt-completion"]
Records = list[tuple[int, dict[str, Any]]]
"""JSON lines as parsed: (1-based line number, object)."""


@dataclass(frozen=True)
class DataSpec:
    """Which file to train on and how to read it (every field maps to a CLI option)."""

    path: str
    encoding: str = "utf-8"
    text_column: str | None = None
    question_column: str | None = None
    answer_column: str | None = None
    txt_split: TxtSplit = "paragraphs"  # .txt: a document per blank-line-separated paragraph, or one per file


@dataclass(frozen=True)
class Formatting:
    """How rows became training text; stored with the model so generation can apply the same template."""

    kind: Kind
    columns: tuple[str, ...]
    prompt_template: str | None = None
    stop_text: str | tuple[str, ...] | None = None  # one or several; generation ends before any of them


@dataclass
class LoadedData:
    """A validated dataset: one ``text`` column, ready to tokenize."""

    spec: DataSpec
    format: str  # txt | csv | jsonl
    formatting: Formatting
    dataset: Dataset
    columns: list[str]
    sha256: str

    @property
    def sample_prompt(self) -> str | None:
        """The prompt part of the first example (its question, its prompt, or its first words)."""
        return self.dataset[0]["prompt"] or None if len(self.dataset) else None

    @property
    def rows(self) -> int:
        return len(self.dataset)

    @property
    def characters(self) -> int:
        """Counted in Arrow, a batch at a time: no Python string per row."""
        import pyarrow.compute as pc

        return sum(
            int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)
            for table in self.dataset.with_format("arrow").iter(batch_size=100_000)
        )

    def texts(self) -> list[str]:
        return list(self.dataset["text"])


@dataclass(frozen=True)
class DatasetSummary:
    """What the user sees before training: enough to tell whether the file is what they meant."""

    path: str
    format: str
    kind: str
    columns: list[str]
    rows: int
    characters: int
    tokens: int
    block_size: int
    blocks: int
    train_blocks: int
    eval_blocks: int
    sha256: str
    preview: list[str] = field(default_factory=list)
    sample_prompt: str | None = None  # a prompt in the data's own format, for samples during training

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# --------------------------------------------------------------------------------------------- validation


def _check_column_options(spec: DataSpec, suffix: str, name: str) -> None:
    """Column options that contradict each other or the file: silently, a text column with an answer column
    trained on the text column alone, and a column named for a .txt file was ignored."""
    named = [
        option
        for option, value in (
            ("--text-column", spec.text_column),
            ("--question-column", spec.question_column),
            ("--answer-column", spec.answer_column),
        )
        if value
    ]
    if suffix in TXT_SUFFIXES and named:
        raise UserError(f"{name} is a plain text file with no columns, so {named[0]} does not apply to it.")
    if spec.text_column and len(named) > 1:
        raise UserError(
            f"--text-column cannot go with {named[1]}: train on one text column, or on question and answer "
            "columns."
        )


def read_text(spec: DataSpec) -> tuple[str, str]:
    """Return ``(text, sha256)`` of the file, or raise the one-sentence error for why it is unusable.

    The file is read once; everything after (validation, the loader, the recorded hash) uses these bytes.
    """
    path = Path(spec.path).expanduser()
    name = str(spec.path)
    _check_regular_file(path, name)
    suffix = path.suffix.lower()
    if suffix not in (*TXT_SUFFIXES, *CSV_SUFFIXES, *JSONL_SUFFIXES):
        raise UserError(f"{name} has an unsupported type '{suffix or '(none)'}'; use a {SUPPORTED} file.")
    _check_column_options(spec, suffix, name)
    raw = _read_regular_file(path, name)
    if not raw:
        raise UserError(f"{name} is empty: there is no text to use.")
    text = _decode(raw, spec.encoding, name)
    if not text.strip():
        raise UserError(f"{name} contains only whitespace: there is no text to use.")
    return text, hashlib.sha256(raw).hexdigest()


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular_file(path: Path, name: str) -> None:
    """Refuse anything but a regular file (after links) from ``stat`` alone: a FIFO would block an ``open``,
    and a device such as ``/dev/zero`` would be read until memory runs out."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"No such file: {name}.") from None
    except OSError as err:
        raise UserError(f"Could not read {name}: {err.strerror or err}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{name} is a directory; choose a {SUPPORTED} file.")
    if not stat.S_ISREG(info.st_mode):
        kind = next((k for test, k in _FILE_KINDS if test(info.st_mode)), "a special file")
        what = f"it links to {kind}" if path.is_symlink() else f"it is {kind}"
        raise UserError(f"{name} is not a regular file ({what}); choose a {SUPPORTED} file.")


def _read_regular_file(path: Path, name: str) -> bytes:
    """All bytes of ``path``, opened so that it cannot block (in case it was swapped for a FIFO since the
    ``stat``) and checked again on the open descriptor before reading."""
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise UserError(f"Could not read {name}: {err.strerror or err}.") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{name} is not a regular file; choose a {SUPPORTED} file.")
        try:
            return file.read()
        except OSError as err:
            raise UserError(f"Could not read {name}: {err.strerror or err}.") from None


_BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _decode(raw: bytes, encoding: str, name: str) -> str:
    """Decode ``raw``; a UTF-16/32 byte-order mark overrides the UTF-8 default.

    NUL bytes mark a binary file, except in UTF-16/32 text, where they are part of most characters: there
    the check runs on the decoded text instead.
    """
    try:
        named = codecs.lookup(_codec(encoding)).name
    except LookupError:
        raise UserError(
            f"Unknown encoding '{encoding}'; use a Python codec name such as utf-8 or latin-1."
        ) from None
    codec, label = _codec(encoding), encoding
    bom = next((c for mark, c in _BOMS if raw.startswith(mark)), None)
    if bom is not None and named in ("utf-8", "utf-8-sig"):
        codec = label = bom
    wide = codecs.lookup(codec).name.startswith(("utf-16", "utf-32"))
    binary = f"{name} looks like a binary file (it contains NUL bytes), not text."
    if not wide and b"\x00" in raw:
        utf16 = _utf16_without_mark(raw)
        if utf16 is not None:
            raise UserError(
                f"{name} looks like {utf16} text without a byte-order mark (every other byte is NUL); "
                f"pass --encoding {utf16}."
            )
        raise UserError(binary)
    try:
        text = raw.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        problem = f"{name} is not valid {label} text (byte 0x{raw[err.start]:02x} at offset {err.start})"
        raise UserError(
            f"{problem}; if it uses another encoding, pass it with --encoding, e.g. --encoding latin-1.",
            problem=problem,
            fix="encoding",
        ) from None
    if "\x00" in text:
        raise UserError(binary)
    return text


def _utf16_without_mark(raw: bytes) -> str | None:
    """``utf-16-le`` or ``-be`` when the NUL bytes of ``raw``'s start sit at every odd (or even) offset, as in
    mostly-ASCII UTF-16 (Windows tools write it); else None."""
    head = raw[:4096]
    odd, even = head[1::2], head[0::2]
    if len(head) >= 4 and odd.count(0) >= 0.9 * len(odd) and 0 not in even:
        return "utf-16-le"
    if len(head) >= 4 and even.count(0) >= 0.9 * len(even) and 0 not in odd:
        return "utf-16-be"
    return None


def _codec(encoding: str) -> str:
    """Read UTF-8 files with or without a byte-order mark."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _pick_columns(spec: DataSpec, columns: Sequence[str], where: str, word: str) -> Formatting:
    """Choose text vs. pair columns from explicit options or defaults; ``word`` is 'columns' or 'fields'."""
    have = ", ".join(columns) if columns else "none"
    if spec.text_column:
        if spec.text_column not in columns:
            raise UserError(f"{where} has no '{spec.text_column}' {word[:-1]} (its {word} are: {have}).")
        return Formatting("text", (spec.text_column,))
    if spec.question_column or spec.answer_column:
        pair = (spec.question_column or "question", spec.answer_column or "answer")
        missing = [c for c in pair if c not in columns]
        if missing:
            raise UserError(f"{where} has no '{missing[0]}' {word[:-1]} (its {word} are: {have}).")
        return _pair_formatting(pair)
    if "text" in columns:
        return Formatting("text", ("text",))
    for pair in (("question", "answer"), ("prompt", "completion")):
        if all(c in columns for c in pair):
            return _pair_formatting(pair)
    option = "--text-column or --question-column/--answer-column"
    problem = (
        f"{where} has no 'text' {word[:-1]} and no 'question'/'answer' or 'prompt'/'completion' pair "
        f"(its {word} are: {have})"
    )
    raise UserError(f"{problem}; choose {word} with {option}.", problem=problem, fix="columns", word=word)


def _pair_formatting(pair: tuple[str, str]) -> Formatting:
    if pair == ("prompt", "completion"):
        # Prompt/completion files carry their own separators (completions usually start with a space).
        return Formatting("prompt-completion", pair, prompt_template="{prompt}")
    return Formatting("qa", pair, prompt_template=QA_PROMPT_TEMPLATE, stop_text=QA_STOP_TEXT)


def csv_columns(text: str, name: str) -> list[str]:
    """The header of a CSV file, after checking every row parses and fits it (so the loader cannot fail)."""
    _allow_csv_fields_of(len(text))
    reader = csv.reader(io.StringIO(text), strict=True)
    rows = 0
    try:
        header = next(reader, [])
        columns = list(header)
        _check_header(columns, name)
        for row in reader:
            if len(row) > len(columns):
                raise UserError(
                    f"Line {reader.line_num} of {name} has {len(row)} fields but the header has "
                    f"{len(columns)}; quote fields that contain commas."
                )
            rows += bool(row)  # the loader skips blank lines
    except csv.Error as err:
        raise UserError(f"Line {reader.line_num} of {name} is not valid CSV: {err}.") from None
    if not rows:
        raise UserError(f"{name} has a header row but no data rows: there is no text to use.")
    return columns


def _check_header(columns: list[str], name: str) -> None:
    """Every column needs one distinct name: the loader renames blank and repeated ones behind our back."""
    if not any(c.strip() for c in columns):
        raise UserError(f"{name} has no header row with column names.")
    for number, column in enumerate(columns, start=1):
        if not column.strip():
            raise UserError(f"Column {number} of the header of {name} has no name; name every column.")
        if column in columns[: number - 1]:
            raise UserError(f"{name} has the column '{column}' twice in its header; rename one of them.")


def _allow_csv_fields_of(size: int) -> None:
    """Raise Python's CSV field limit (128 KiB by default) so no field of a ``size``-character file is
    refused; the limit is process-wide, so it only ever grows."""
    wanted = min(size + 1, 2**31 - 1)  # a C long on every platform
    if csv.field_size_limit() < wanted:
        csv.field_size_limit(wanted)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` keeps the last of repeated keys silently; a repeated key is a mistake to point at."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKeyError(key)
        record[key] = value
    return record


def jsonl_records(text: str, name: str) -> Records:
    """Parse every non-blank line, naming the first bad one by its 1-based line number.

    Lines end at ``\n`` only: JSON strings may hold U+2028 and other characters ``str.splitlines`` splits on.
    """
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise UserError(
                f"Line {number} of {name} is not valid JSON: {err.msg} (column {err.colno})."
            ) from None
        except _DuplicateKeyError as err:
            raise UserError(
                f"Line {number} of {name} has the key '{err.key}' twice; keep one of them."
            ) from None
        if not isinstance(value, dict):
            raise UserError(f"Line {number} of {name} is not a JSON object.")
        records.append((number, value))
    if not records:
        raise UserError(f"{name} has no JSON lines: there is no text to use.")
    return records


def inspect_file(spec: DataSpec) -> tuple[str, list[str]]:
    """Validate the file and return ``(format, columns)`` without loading it into ``datasets``.

    The TUI uses this to offer a column choice when the defaults are not present.
    """
    text, _ = read_text(spec)
    fmt, columns, _ = _parse(spec, text)
    return fmt, columns


def _parse(spec: DataSpec, text: str) -> tuple[str, list[str], Records]:
    """``(format, columns, records)``; records are parsed for JSON lines only."""
    name = str(spec.path)
    suffix = Path(spec.path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv", csv_columns(text, name), []
    if suffix in JSONL_SUFFIXES:
        records = jsonl_records(text, name)
        columns: list[str] = []
        for _, record in records:
            columns.extend(k for k in record if k not in columns)
        return "jsonl", columns, records
    return "txt", [], []


# ------------------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed every check made before ``datasets`` is imported, with what was read."""

    sha256: str
    format: str
    columns: list[str]
    formatting: Formatting
    text: str
    records: Records


def check_file(spec: DataSpec) -> CheckedFile:
    """Every check :func:`load_data` makes before ``datasets`` is imported: cheap enough to refuse a bad
    file before a detached run's process is started."""
    text, sha = read_text(spec)
    fmt, columns, records = _parse(spec, text)
    name = str(spec.path)
    if fmt == "txt":
        formatting = Formatting("text", ())
    elif fmt == "csv":
        formatting = _pick_columns(spec, columns, name, "columns")
    else:
        formatting = _pick_columns(spec, columns, name, "fields")
        _check_jsonl_fields(records, formatting, name)
    return CheckedFile(sha, fmt, columns, formatting, text, records)


def load_data(spec: DataSpec) -> LoadedData:
    """Validate ``spec`` and load it through ``datasets.load_dataset`` as a one-column ``text`` dataset."""
    return load_checked(spec, check_file(spec))


def load_checked(spec: DataSpec, checked: CheckedFile) -> LoadedData:
    """Load a file :func:`check_file` passed (what it read is reused, not read again)."""
    name = str(spec.path)
    fmt, columns, formatting, sha = checked.format, checked.columns, checked.formatting, checked.sha256
    dataset = _load_with_datasets(spec, fmt, formatting, columns, checked.text, checked.records)
    if len(dataset) == 0:
        raise UserError(f"{name} has no non-empty rows: there is no text to use.")
    return LoadedData(
        spec=spec, format=fmt, formatting=formatting, dataset=dataset, columns=columns, sha256=sha
    )


def _check_jsonl_fields(records: Records, formatting: Formatting, name: str) -> None:
    for number, record in records:
        for key in formatting.columns:
            if key not in record:
                raise UserError(f"Line {number} of {name} has no '{key}' field.")
            value = record[key]
            if value is not None and not isinstance(value, str):
                kind = {
                    bool: "true/false",
                    int: "a number",
                    float: "a number",
                    list: "a list",
                    dict: "an object",
                }
                raise UserError(
                    f"Line {number} of {name} has {kind.get(type(value), 'a non-text value')} in '{key}', not text."
                )


def _load_with_datasets(
    spec: DataSpec, fmt: str, formatting: Formatting, columns: list[str], text: str, records: Records
) -> Dataset:
    """Load what was read and validated, through ``datasets``.

    The loader is given a UTF-8 copy under a fixed name rather than the user's path: ``data_files`` is a
    glob pattern (``a[1].txt`` would load ``a1.txt``), and the copy is exactly the bytes that were hashed,
    decoded. For JSON lines the copy holds only the chosen fields, already checked to be text.
    """
    from datasets import Features, Value, load_dataset

    from gpt2tui.core.quiet import quiet_datasets

    quiet_datasets()
    # datasets prepares Arrow files in a cache before loading; with keep_in_memory the table is read into
    # memory, so a throw-away cache keeps the user's disk (and our data folder) untouched.
    scratch = tempfile.TemporaryDirectory(prefix="gpt2tui-datasets-")
    try:
        copy = _write_loader_copy(Path(scratch.name), fmt, text, records, formatting)
        common: dict[str, Any] = {
            "data_files": str(copy),
            "split": "train",
            "cache_dir": str(Path(scratch.name) / "cache"),
            "keep_in_memory": True,
            "encoding": "utf-8",
        }
        if fmt == "txt":
            sample_by = "paragraph" if spec.txt_split == "paragraphs" else "document"
            ds = load_dataset("text", sample_by=sample_by, **common)
        else:
            fields = formatting.columns if fmt == "jsonl" else columns
            features = Features({c: Value("string") for c in fields})
            if fmt == "csv":
                ds = load_dataset("csv", features=features, na_filter=False, **common)
            else:
                ds = load_dataset("json", features=features, **common)
    except UserError:
        raise
    except Exception as err:  # datasets wraps parser errors in several types; the user needs one line.
        raise UserError(f"{spec.path} could not be parsed as {fmt.upper()}: {_root_cause(err)}") from None
    finally:
        scratch.cleanup()

    def to_text(batch: dict[str, list[Any]]) -> dict[str, list[str]]:
        return {"text": format_rows(batch, formatting), "prompt": prompt_parts(batch, formatting)}

    from datasets import Features, Value

    text_features = Features({"text": Value("string"), "prompt": Value("string")})
    ds = ds.map(
        to_text, batched=True, remove_columns=ds.column_names, features=text_features, keep_in_memory=True
    )
    return ds.filter(
        lambda batch: [bool(t.strip()) for t in batch["text"]], batched=True, keep_in_memory=True
    )


def _write_loader_copy(folder: Path, fmt: str, text: str, records: Records, formatting: Formatting) -> Path:
    """Write the file ``datasets`` will read (see :func:`_load_with_datasets`); newlines are kept as read."""
    copy = folder / f"data.{fmt}"
    with copy.open("w", encoding="utf-8", newline="") as out:
        if fmt == "jsonl":
            for _, record in records:
                out.write(json.dumps({key: record[key] for key in formatting.columns}) + "\n")
        else:
            out.write(text)
    return copy


def _root_cause(err: BaseException) -> str:
    """The innermost error's first line, as the end of a sentence."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.rstrip(".") + "."


def format_rows(batch: dict[str, list[Any]], formatting: Formatting) -> list[str]:
    """Turn a batch of rows into training texts (the Q/A template is applied here)."""

    def cell(value: Any) -> str:
        return "" if value is None else str(value).strip()

    if formatting.kind == "text":
        column = formatting.columns[0] if formatting.columns else "text"
        # Plain-text paragraphs keep their inner layout; only the blank lines around them go.
        return [cell(v) if formatting.columns else (v or "").strip("\r\n") for v in batch[column]]
    first, second = formatting.columns
    if formatting.kind == "qa":
        return [
            QA_TEMPLATE.format(question=cell(q), answer=cell(a)) if cell(q) and cell(a) else ""
            for q, a in zip(batch[first], batch[second], strict=True)
        ]
    return [
        f"{'' if p is None else p}{'' if c is None else c}" if (p or c) else ""
        for p, c in zip(batch[first], batch[second], strict=True)
    ]


SAMPLE_PROMPT_WORDS = 8


def prompt_parts(batch: dict[str, list[Any]], formatting: Formatting) -> list[str]:
    """What a user would type to get each row's continuation: the question, the prompt, or the first words."""
    if formatting.kind == "text":
        column = formatting.columns[0] if formatting.columns else "text"
        return [" ".join(str(v or "").split()[:SAMPLE_PROMPT_WORDS]) for v in batch[column]]
    return ["" if v is None else str(v).strip() for v in batch[formatting.columns[0]]]


# ------------------------------------------------------------------------------------------------ splits


def check_eval_split(eval_split: float) -> None:
    if not 0.0 < eval_split < 1.0:
        raise UserError(f"--eval-split must be between 0 and 1 (exclusive), not {eval_split}.")
