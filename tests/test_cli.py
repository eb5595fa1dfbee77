"""The headless CLI end to end: real subprocesses for the happy path, in-process for each error sentence."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2tui.cli import main
from tests.conftest import QA_CSV, cli, cli_together, gpt2tui_command, tree_snapshot

gpt2tui = cli


def test_train_generate_eval_and_models_end_to_end(home: Path) -> None:
    run = gpt2tui(
        "train",
        str(QA_CSV),
        "--base",
        "scratch",
        "--scratch-size",
        "tiny",
        "--max-steps",
        "60",
        "--name",
        "qa-tiny",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert any(line.startswith("step 10/60 | epoch") and "tok/s" in line and "ETA" in line for line in lines)
    result = json.loads(lines[-1])
    for key in (
        "model",
        "path",
        "eval_loss_before",
        "eval_loss_after",
        "perplexity_before",
        "perplexity_after",
        "train_tokens",
        "tokens_per_second",
    ):
        assert key in result
    assert result["model"] == "qa-tiny" and result["perplexity_after"] < result["perplexity_before"]
    assert run.stderr == ""

    ask = ("generate", "qa-tiny", "What is Mars?", "--strategy", "greedy", "--max-new-tokens", "20")
    first, second, streamed, ev = cli_together(
        (*ask, "--json"), (*ask, "--json"), ask, ("eval", "qa-tiny", str(QA_CSV), "--json")
    )
    assert first.returncode == second.returncode == 0
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["text"] == b["text"] and 0 < a["new_tokens"] <= 20 and a["seconds"] > 0
    assert streamed.stdout == a["text"] + "\n"
    assert ev.returncode == 0, ev.stderr
    assert set(json.loads(ev.stdout)) >= {"loss", "perplexity", "tokens"}

    listed = json.loads(gpt2tui("models", "list", "--json").stdout)
    assert [(m["name"], m["path"]) for m in listed] == [("qa-tiny", str(home / "models" / "qa-tiny"))]
    shown = json.loads(gpt2tui("models", "show", "qa-tiny", "--json").stdout)
    assert shown["name"] == "qa-tiny" and shown["base"] == "scratch" and "hyperparameters" in shown


def test_ctrl_c_stops_training_and_saves_a_loadable_model(home: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpt2tui",
            "train",
            str(QA_CSV),
            "--base",
            "scratch",
            "--max-steps",
            "100000",
            "--log-every",
            "5",
            "--name",
            "interrupted",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("step 5/"):
            break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped early; saved interrupted" in out
    assert "Traceback" not in err
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(home / "models" / "interrupted")


def test_unreachable_hub_exits_2_fast_with_the_offline_choices(home: Path) -> None:
    run = gpt2tui("train", str(QA_CSV), "--base", "gpt2")  # timed in bench/hub_offline.py
    assert run.returncode == 2
    assert run.stderr == (
        "gpt2tui: Could not download 'gpt2': the Hugging Face Hub cannot be reached and it is not in the local "
        "cache; offline, use a local save_pretrained folder (--base PATH) or train a new model (--base scratch).\n"
    )
    assert run.stdout == ""


def test_help_is_quick_and_lists_the_commands() -> None:
    run = gpt2tui("--help")
    assert run.returncode == 0
    for command in ("train", "generate", "eval", "models"):
        assert command in run.stdout


def _bad(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02data")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,score\nann,3\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": oops}\n')
    small = tmp_path / "small.txt"
    small.write_text("Tiny.\n")
    scratch = ["--base", "scratch", "--max-steps", "5"]
    return {
        "missing": ([str(tmp_path / "nope.txt"), *scratch], f"No such file: {tmp_path / 'nope.txt'}."),
        "directory": (
            [str(tmp_path), *scratch],
            f"{tmp_path} is a directory; choose a .txt, .text, .md, .csv, .jsonl file.",
        ),
        "empty": ([str(empty), *scratch], f"{empty} is empty: there is no text to use."),
        "whitespace": (
            [str(blank), *scratch],
            f"{blank} contains only whitespace: there is no text to use.",
        ),
        "binary": (
            [str(binary), *scratch],
            f"{binary} looks like a binary file (it contains NUL bytes), not text.",
        ),
        "encoding": (
            [str(latin), *scratch],
            f"{latin} is not valid utf-8 text (byte 0xe9 at offset 3); if it uses another encoding, pass it with "
            "--encoding, e.g. --encoding latin-1.",
        ),
        "columns": (
            [str(wrong), *scratch],
            f"{wrong} has no 'text' column and no 'question'/'answer' or 'prompt'/'completion' pair (its columns "
            "are: name, score); choose columns with --text-column or --question-column/--answer-column.",
        ),
        "jsonl": (
            [str(broken), *scratch],
            f"Line 2 of {broken} is not valid JSON: Expecting value (column 10).",
        ),
        "too-small": (
            [str(small), *scratch],
            f"{small} has 6 tokens, which is not enough for one train and one eval block of 128 tokens; add more text.",
        ),
        "block-size": (
            [str(QA_CSV), *scratch, "--block-size", "1024"],
            "--block-size 1024 is larger than the model's context length (256 tokens).",
        ),
        "bad-name": (
            [str(QA_CSV), *scratch, "--name", "../x"],
            "'../x' is not a valid model name; use 1-80 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit.",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "whitespace",
        "binary",
        "encoding",
        "columns",
        "jsonl",
        "too-small",
        "block-size",
        "bad-name",
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(
    case: str, tmp_path: Path, home: Path, capsys
) -> None:
    args, message = _bad(tmp_path)[case]
    assert main(["train", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"gpt2tui: {message}\n"
    assert captured.out == ""
    # Refused before any file was written (the data folder may exist: it is checked for writability first),
    # except a too-small file's tokens: counting them is what proves it too small, so they are cached.
    written = tree_snapshot(home)
    if case == "too-small":
        written = {path: size for path, size in written.items() if not path.startswith("cache/")}
    assert written == {}


def test_an_unusable_data_folder_is_one_sentence(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("GPT2TUI_HOME", str(blocker))
    assert main(["train", str(QA_CSV), "--base", "scratch", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gpt2tui: Cannot create the folder {blocker / 'models'} (")
    assert err.endswith("); set GPT2TUI_HOME to a writable folder.\n")
    assert blocker.read_text() == "not a folder"


def test_unexpected_errors_are_one_sentence_too(monkeypatch, capsys) -> None:
    import gpt2tui.cli as cli

    def broken(args):
        raise RuntimeError("something deep broke\nwith a second line")

    monkeypatch.setattr(cli, "cmd_models", broken)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: Unexpected error: RuntimeError: something deep broke (set GPT2TUI_DEBUG=1 for a traceback).\n"
    )


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    args, message = _bad(tmp_path)["encoding"]
    run = gpt2tui("train", *args)
    assert run.returncode == 2 and run.stderr == f"gpt2tui: {message}\n" and "Traceback" not in run.stderr


def test_existing_name_is_refused(tiny_model: str, home: Path, capsys) -> None:
    before = tree_snapshot(home / "models")
    assert main(["train", str(QA_CSV), "--base", "scratch", "--name", tiny_model]) == 2
    assert capsys.readouterr().err == (
        "gpt2tui: A model named 'tiny' already exists; choose another --name or delete it with "
        "'gpt2tui models rm tiny'.\n"
    )
    assert tree_snapshot(home / "models") == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["generate", "ghost", "hi"],
            "Could not download 'ghost': the Hugging Face Hub cannot be reached and it is not in the local cache; "
            "offline, name a stored model ('gpt2tui models list') or a local save_pretrained folder.",
        ),
        (
            ["generate", "tiny", "hi", "--temperature", "1e-45"],
            "--temperature must be at least 0.01, not 1e-45.",
        ),
        (
            ["models", "show", "ghost"],
            "No stored model named 'ghost'; 'gpt2tui models list' shows the stored models.",
        ),
        (["models", "rm"], "'models rm' takes 1 name, not 0."),
        (
            ["models", "rename", "tiny", "../up"],
            "'../up' is not a valid model name; use 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit.",
        ),
        (["eval", "tiny", "missing.txt"], "No such file: missing.txt."),
        (["train", "x.txt", "--max-steps", "0"], "Argument --max-steps: must be at least 1, not 0."),
    ],
)
def test_other_errors_are_one_sentence(
    argv: list[str], message: str, tiny_model: str, home: Path, capsys
) -> None:
    before = tree_snapshot(home / "models")
    with pytest.raises(SystemExit) if argv[-2:] == ["--max-steps", "0"] else _no_raise() as caught:
        code = main(argv)
    if caught is not None and hasattr(caught, "value"):
        code = caught.value.code
    assert code == 2
    assert capsys.readouterr().err == f"gpt2tui: {message}\n"
    assert tree_snapshot(home / "models") == before


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> bool:
        return False


def test_models_rename_and_rm(tiny_model: str, home: Path, capsys) -> None:
    assert main(["models", "rename", "tiny", "renamed"]) == 0
    assert main(["models", "list", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert [m["name"] for m in json.loads(out)] == ["renamed"]
    assert main(["models", "rm", "renamed"]) == 0
    assert main(["models", "list"]) == 0
    assert "No stored models in" in capsys.readouterr().out


def test_the_tui_with_an_unusable_data_folder_is_one_sentence(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("GPT2TUI_HOME", str(blocker))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)  # as if started from a terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main([]) == 2
    assert capsys.readouterr().err.startswith(f"gpt2tui: Cannot create the folder {blocker / 'logs'} (")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_generate_shows_a_models_control_characters_as_symbols_on_a_terminal_only() -> None:
    """An untrained model can reply with an escape: printed raw, the terminal would obey what follows it."""
    from gpt2tui.cli import write_reply

    chunks = ["Isine\x1b[2J", " reward\x07", "\x9b1m\tend\n"]
    terminal, pipe = Terminal(), io.StringIO()
    write_reply(chunks, terminal)
    write_reply(chunks, pipe)
    assert terminal.getvalue() == "Isine␛[2J reward␇�1m\tend\n\n"
    assert pipe.getvalue() == "".join(chunks) + "\n"  # into a file: the model's exact text


def test_generate_into_a_pipe_closed_early_exits_quietly(tiny_model: str) -> None:
    """``gpt2tui generate … | head -c 5``: the reader leaves mid-reply. The generating thread was still inside
    torch when the process exited, which aborted it (exit 134, "terminate called without an active
    exception")."""
    process = subprocess.Popen(
        gpt2tui_command("generate", tiny_model, "In the beginning", "--raw", "--max-new-tokens", "200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.read(5)
        process.stdout.close()
        errors = process.stderr.read().decode()
        assert process.wait(timeout=120) == 0, errors
        assert "terminate" not in errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_prompt_argument_that_is_not_utf8_is_generated_from(
    tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gpt2tui generate tiny $'caf\\xe9'`` in a UTF-8 terminal: Python holds the byte as a lone surrogate,
    which the tokenizer refused with a TypeError ("Unexpected error")."""
    assert main(["generate", tiny_model, "caf\udce9", "--raw", "--max-new-tokens", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_tokens"] == 2


def test_models_list_marks_a_model_whose_run_was_stopped_early(
    tiny_model: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the home screen does: its replies are those of a model that trained less than planned."""
    meta_path = home / "models" / tiny_model / "gpt2tui.json"
    meta = json.loads(meta_path.read_text())
    meta.update(stopped=True, steps=12)
    meta["hyperparameters"]["planned_steps"] = 40
    meta_path.write_text(json.dumps(meta))
    assert main(["models", "list"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(tiny_model)]
    assert row.endswith("  (stopped early at step 12 of 40)")
