"""Chat transcripts as files: what the Markdown says, reading it back exactly, and question/answer export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2tui.core.errors import UserError
from gpt2tui.core.transcripts import (
    SavedReply,
    SavedTurn,
    Transcript,
    qa_rows,
    read_transcript,
    save_transcript,
    write_qa_jsonl,
)


def reply(text: str, strategy: str = "top-p", **kwargs: object) -> SavedReply:
    settings = {"strategy": strategy, "max_new_tokens": 40}
    if strategy == "top-p":
        settings.update(temperature=0.8, top_p=0.95)
    return SavedReply(model="tiny", text=text, settings=settings, **kwargs)  # type: ignore[arg-type]


def sample() -> Transcript:
    return Transcript(
        models=["tiny"],
        turns=[
            SavedTurn("What is -- love?", "chat", [reply("A <!-- tricky --> reply", seed=7, new_tokens=5)]),
            SavedTurn("Once upon", "raw", [reply(" a time", "greedy", seed=3, new_tokens=3)]),
            SavedTurn("Who?", "chat", [reply("Me", "greedy", seed=9, stopped=True)]),
            SavedTurn("Why?", "chat", [reply("", error="out of memory")]),
            SavedTurn("Where?", "chat", [reply(" Here.\n", "beam", seed=1, new_tokens=2)]),
        ],
    )


def test_the_markdown_lists_only_what_decided_each_reply(tmp_path: Path) -> None:
    text = save_transcript(sample(), tmp_path).read_text(encoding="utf-8")
    sampled, greedy = text.split("## 2.")[0], text.split("## 2.")[1].split("## 3.")[0]
    assert "- temperature: 0.8" in sampled and "- top-p: 0.95" in sampled and "- seed: 7" in sampled
    assert "- strategy: greedy" in greedy and "seed" not in greedy and "temperature" not in greedy
    assert "top" not in greedy and "beams" not in greedy
    assert "- failed: out of memory" in text
    assert "stopped by the user (partial reply)" in text


def test_a_saved_transcript_reads_back_exactly(tmp_path: Path) -> None:
    original = sample()
    path = save_transcript(original, tmp_path)
    assert read_transcript(path) == original
    # The data block is one HTML comment: the reply's own "-->" and "--" do not end it early.
    assert path.read_text(encoding="utf-8").split("<!-- gpt2tui-transcript")[1].count("-->") == 1


def test_saving_again_writes_the_same_file(tmp_path: Path) -> None:
    transcript = sample()
    first = save_transcript(transcript, tmp_path)
    transcript.turns.append(SavedTurn("More?", "chat", [reply("Yes")]))
    second = save_transcript(transcript, tmp_path, first)
    assert second == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    assert len(read_transcript(first).turns) == 6


def test_a_file_that_is_not_a_transcript_is_refused_in_one_sentence(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# My notes\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_transcript(notes)
    assert str(err.value) == "notes.md is not a transcript saved by gpt2tui (its data block is missing)."
    damaged = tmp_path / "damaged.md"
    damaged.write_text('# x\n<!-- gpt2tui-transcript {"turns": 3} -->\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        read_transcript(damaged)
    assert str(err.value) == "damaged.md is not a transcript saved by gpt2tui (its data block is damaged)."
    assert notes.read_text(encoding="utf-8") == "# My notes\n"


def test_question_answer_export_keeps_whole_chat_answers_only(tmp_path: Path) -> None:
    rows = qa_rows(sample())
    assert rows == [
        {"question": "What is -- love?", "answer": "A <!-- tricky --> reply"},
        {"question": "Where?", "answer": "Here."},
    ]
    path = write_qa_jsonl(rows, tmp_path / "chat.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows


def test_the_second_model_of_a_side_by_side_chat_exports_its_own_answers() -> None:
    both = Transcript(
        models=["a", "b"],
        turns=[SavedTurn("Hi", "chat", [reply("from a"), SavedReply("b", "from b", {"strategy": "greedy"})])],
    )
    assert qa_rows(both, 1) == [{"question": "Hi", "answer": "from b"}]


def test_an_empty_export_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        write_qa_jsonl([], tmp_path / "none.jsonl")
    assert str(err.value) == "There is nothing to export: no chat reply was answered in full yet."
    assert not any(tmp_path.iterdir())


def test_exported_rows_train_as_question_answer_data(tmp_path: Path) -> None:
    """The export is a file ``gpt2tui train`` reads as question/answer rows."""
    from gpt2tui.core.data import DataSpec, check_file

    path = write_qa_jsonl(qa_rows(sample()), tmp_path / "chat.jsonl")
    checked = check_file(DataSpec(path))
    assert checked.format == "jsonl" and checked.formatting.kind == "qa"
    assert len(checked.records) == 2


def test_token_probabilities_are_one_line_in_the_markdown(tmp_path: Path) -> None:
    transcript = sample()
    transcript.turns[0].replies[0].probabilities = [("A", 0.5), ("\n", 0.25), ("`x`", 0.125)]
    text = save_transcript(transcript, tmp_path).read_text(encoding="utf-8")
    assert "- token probabilities: `A` 0.50 · `↵` 0.25 · `ˋxˋ` 0.12\n" in text
    assert read_transcript(tmp_path / next(tmp_path.iterdir()).name).turns[0].replies[0].probabilities == [
        ("A", 0.5),
        ("\n", 0.25),
        ("`x`", 0.125),
    ]
