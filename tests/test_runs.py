"""Runs as real processes: detached, killed, resumed exactly, stopped, interrupted; and the run folder's files.

Every test that starts a process ends it in a ``finally`` (by pid, only the processes it started).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt2tui.core.checkpoints import COMPLETE, complete_checkpoints, save_checkpoint
from gpt2tui.core.errors import UserError
from gpt2tui.core.events import EvalFinished, RunFinished, RunStarted, StepLogged, event_to_dict
from gpt2tui.core.procs import signal_process, start_time
from gpt2tui.core.runs import DIED, EventLog, Run, get_run, list_runs, read_events
from tests.conftest import KJV_TXT, QA_CSV, cli, gpt2tui_command, tree_snapshot

TINY = ("--base", "scratch", "--scratch-size", "tiny")
WAIT_SECONDS = 180


gpt2tui = cli


def popen_train(data: str, *args: str, text: bool = False) -> subprocess.Popen:
    """A foreground ``gpt2tui train`` on a tiny scratch model, its output piped to the test."""
    command = gpt2tui_command("train", data, *TINY, *args)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)


def started(*args: str) -> dict:
    """``train --detach --json``: the run id, pid and folder."""
    run = gpt2tui("train", *args, "--detach", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def wait_for(predicate, what: str, timeout: float = WAIT_SECONDS, poll: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def ended(run_id: str) -> str:
    run = get_run(run_id)
    return wait_for(lambda: None if run.status().live else run.status().state, f"run {run_id} to end")


class Started:
    """Processes a test starts, each with its start time: ended at the end only if it is still that process."""

    def __init__(self) -> None:
        self.known: list[tuple[int, float | None]] = []

    def append(self, pid: int) -> None:
        self.known.append((pid, start_time(pid)))

    def __iadd__(self, more: list[int]) -> Started:
        for pid in more:
            self.append(pid)
        return self

    def end_all(self) -> None:
        for pid, started_at in self.known:
            signal_process(pid, started_at, signal.SIGKILL)


@pytest.fixture
def pids() -> Iterator[Started]:
    tracked = Started()
    yield tracked
    tracked.end_all()


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


# ------------------------------------------------------------------------------------------ real processes


def test_detached_run_outlives_its_starter_and_its_model_loads(home: Path, pids: Started) -> None:
    info = started(str(QA_CSV), *TINY, "--max-steps", "20", "--name", "bg")
    pids.append(info["pid"])
    assert set(info) == {"run", "pid", "folder"} and Path(info["folder"]).is_dir()
    # The starting process has exited already; the run is on its own.
    assert ended(info["run"]) == "finished"
    listed = json.loads(gpt2tui("runs", "list", "--json").stdout)
    assert [(r["run"], r["state"], r["step"], r["total_steps"], r["model"]) for r in listed] == [
        (info["run"], "finished", 20, 20, "bg")
    ]
    assert {"pid", "updated"} <= set(listed[0])
    folder = Path(info["folder"])
    for name in ("config.json", "events.jsonl", "status.json", "run.log"):
        assert (folder / name).is_file(), name
    log = (folder / "run.log").read_text()
    assert "saved bg" in log and "\x1b[" not in log and "\r" not in log
    config = json.loads((folder / "config.json").read_text())
    assert config["train"]["max_steps"] == 20 and config["train"]["name"] == "bg"
    assert config["dataset"]["sha256"] and config["dataset"]["size"] == QA_CSV.stat().st_size
    lines = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert all(line["run"] == info["run"] and line["time"] > 0 for line in lines)
    generated = gpt2tui("generate", "bg", "What is Mars?", "--max-new-tokens", "5", "--seed", "1")
    assert generated.returncode == 0, generated.stderr


def test_kill_9_after_a_checkpoint_then_resume_ends_with_the_uninterrupted_weights(
    home: Path, pids: Started
) -> None:
    # Both runs start at once, so each would see the other's core as busy: fix the thread count, or their
    # sums would run in another order (a resume reuses the count its run began with).
    common = (
        str(KJV_TXT),
        *TINY,
        "--max-steps",
        "24",
        "--save-every",
        "12",
        "--eval-every",
        "12",
        "--threads",
        "2",
    )
    straight = subprocess.Popen(
        gpt2tui_command("train", *common, "--name", "straight"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids.append(straight.pid)
    info = started(*common, "--name", "resumed")
    pids.append(info["pid"])
    run = get_run(info["run"])
    wait_for(lambda: complete_checkpoints(run.checkpoints_dir), "the step-12 checkpoint", poll=0.01)
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_for(lambda: run.status().state == "failed", "the killed run to read as failed")
    assert run.status().message == DIED.format(run=run.id)
    # A checkpoint without its completion marker (killed mid-write) must be ignored by resume.
    partial = run.checkpoints_dir / "step-18"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"truncated")

    resumed = gpt2tui("runs", "resume", run.id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    pids.append(json.loads(resumed.stdout)["pid"])
    assert ended(run.id) == "finished"
    assert straight.wait(timeout=WAIT_SECONDS) == 0, straight.stderr.read() if straight.stderr else ""

    a, b = weights(home / "models" / "straight"), weights(home / "models" / "resumed")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    meta_a = json.loads((home / "models" / "straight" / "gpt2tui.json").read_text())
    meta_b = json.loads((home / "models" / "resumed" / "gpt2tui.json").read_text())
    assert abs(meta_a["eval_loss_after"] - meta_b["eval_loss_after"]) <= 1e-4
    assert meta_b["run"] == run.id and meta_b["steps"] == 24
    events, _ = run.events()
    assert [e.event.resumed_from for e in events if type(e.event).__name__ == "RunStarted"] == [0, 12]


def test_runs_stop_saves_a_checkpoint_and_the_model(home: Path, pids: Started) -> None:
    info = started(str(KJV_TXT), *TINY, "--max-steps", "5000", "--name", "long", "--log-every", "1")
    pids.append(info["pid"])
    run = get_run(info["run"])
    wait_for(lambda: run.status().step >= 2, "the first steps")
    stopping = gpt2tui("runs", "stop", run.id)
    assert stopping.returncode == 0, stopping.stderr
    assert ended(run.id) == "stopped"
    meta = json.loads((home / "models" / "long" / "gpt2tui.json").read_text())
    assert meta["stopped"] is True and 2 <= meta["steps"] < 5000
    assert complete_checkpoints(run.checkpoints_dir)[-1].step == meta["steps"]
    again = gpt2tui("runs", "stop", run.id)
    assert again.returncode == 2
    assert again.stderr == f"gpt2tui: Run {run.id} is not running (stopped); there is nothing to stop.\n"


def test_sigterm_to_a_foreground_train_saves_the_model(home: Path, pids: Started) -> None:
    process = popen_train(str(KJV_TXT), "--max-steps", "5000", "--name", "fg", text=True)
    pids.append(process.pid)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("step "):
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 0, err
    assert "stopped early; saved fg" in out
    assert json.loads((home / "models" / "fg" / "gpt2tui.json").read_text())["stopped"] is True
    assert [r.status().state for r in list_runs()] == ["stopped"]


def test_a_closed_stdout_pipe_never_kills_the_training(home: Path, pids: Started) -> None:
    process = popen_train(str(QA_CSV), "--max-steps", "30", "--name", "piped")
    pids.append(process.pid)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(10)  # `| head -c 10`
    process.stdout.close()
    assert process.wait(timeout=WAIT_SECONDS) == 0
    assert process.stderr.read() == b""
    assert (home / "models" / "piped" / "model.safetensors").is_file()


def test_attach_into_a_pipe_returns_when_its_reader_leaves(home: Path, pids: Started) -> None:
    """``runs attach R | head -2`` returned only when the run ended (minutes later); the run must go on."""
    info = started(str(QA_CSV), *TINY, "--max-steps", "100000", "--name", "long")
    pids.append(info["pid"])
    attach = subprocess.Popen(
        gpt2tui_command("runs", "attach", info["run"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    pids.append(attach.pid)
    assert attach.stdout is not None and attach.stderr is not None
    assert attach.stdout.readline().startswith(b"training long:")
    attach.stdout.close()  # head has its lines
    assert attach.wait(timeout=60) == 0
    assert attach.stderr.read() == b""
    assert get_run(info["run"]).status().state == "running"
    assert gpt2tui("runs", "stop", info["run"]).returncode == 0
    assert ended(info["run"]) == "stopped"


def test_two_processes_on_the_cpu_match_one_with_the_same_global_batch(home: Path) -> None:
    # Without dropout: each process draws its own dropout masks, so only then can the runs agree exactly.
    common = (str(KJV_TXT), *TINY, "--max-steps", "6", "--block-size", "64", "--dropout", "0", "--json")
    one = gpt2tui("train", *common, "--batch-size", "8", "--name", "one")
    # The README's multi-node form (every process runs `gpt2tui train`; only rank 0 has the run folder),
    # with a checkpoint on the way: every process must meet at it, or rank 0 waits forever.
    launch_two = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch_two += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = subprocess.run(
        [
            *launch_two,
            "-m",
            "gpt2tui",
            "train",
            *common,
            "--batch-size",
            "4",
            "--save-every",
            "3",
            "--name",
            "two",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "ACCELERATE_USE_CPU": "true"},
    )
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = json.loads(one.stdout.splitlines()[-1]), json.loads(two.stdout.splitlines()[-1])
    # gloo's all-reduce sums gradients in another order than one batch does: equal to float rounding.
    assert a["eval_loss_before"] == pytest.approx(b["eval_loss_before"], abs=1e-6)
    assert abs(a["eval_loss_after"] - b["eval_loss_after"]) <= 1e-4
    assert a["eval_loss_after"] < a["eval_loss_before"] - 0.05  # it trained: not equal by standing still
    assert a["train_tokens"] == b["train_tokens"]
    meta = json.loads((home / "models" / "two" / "gpt2tui.json").read_text())
    assert meta["hyperparameters"]["processes"] == 2
    runs = {r.status().model: r for r in list_runs()}
    assert set(runs) == {"one", "two"}  # one run folder per run, however many processes
    assert [c.step for c in complete_checkpoints(runs["two"].checkpoints_dir)] == [3]


def test_num_processes_starts_the_worker_through_accelerate(home: Path) -> None:
    from gpt2tui.core import launch
    from gpt2tui.core.config import TrainConfig
    from gpt2tui.core.data import DataSpec

    run = launch.create(TrainConfig(DataSpec(str(QA_CSV)), base="scratch", max_steps=2), num_processes=4)
    command, env = launch.worker_command(run, resume=True)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[-4:] == ["-m", "gpt2tui.worker", str(run.folder), "--resume"]
    assert env["PYTHONUNBUFFERED"] == "1"


def test_two_runs_started_together_get_unique_names(home: Path, pids: Started) -> None:
    first = started(str(QA_CSV), *TINY, "--max-steps", "3")
    second = started(str(QA_CSV), *TINY, "--max-steps", "3")
    pids += [first["pid"], second["pid"]]
    assert ended(first["run"]) == ended(second["run"]) == "finished"
    names = sorted(get_run(i["run"]).status().model for i in (first, second))
    assert names == ["qa-scratch-tiny", "qa-scratch-tiny-2"]
    assert sorted(p.name for p in (home / "models").iterdir()) == names


def test_a_name_a_live_run_will_write_is_refused(home: Path, pids: Started) -> None:
    info = started(str(KJV_TXT), *TINY, "--max-steps", "5000", "--name", "taken")
    pids.append(info["pid"])
    try:
        refused = gpt2tui("train", str(QA_CSV), *TINY, "--max-steps", "3", "--name", "taken", "--detach")
        assert refused.returncode == 2
        assert refused.stderr == (
            f"gpt2tui: The run {info['run']} is training a model named 'taken'; choose another --name.\n"
        )
        assert [r.id for r in list_runs()] == [info["run"]]  # the refused run left nothing behind
        early = gpt2tui("generate", "taken", "hi")  # not a Hub lookup of 'taken'
        assert (early.returncode, early.stderr) == (
            2,
            f"gpt2tui: The model 'taken' is not stored yet: the run {info['run']} is training it and stores it "
            f"when it ends ('gpt2tui runs attach {info['run']}' follows it).\n",
        )
    finally:
        gpt2tui("runs", "stop", info["run"])
        ended(info["run"])


# ----------------------------------------------------------------------------------------- refusals


def hand_written_run(home: Path, state: str, pid: int | None = None, started_at: float | None = None) -> Run:
    folder = home / "runs" / "20260101-000000-abcd"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {"train": {"data": {"path": str(QA_CSV)}}, "dataset": {"path": str(QA_CSV), "sha256": "0"}}
        )
    )
    status = {"run": folder.name, "state": state, "pid": pid, "pid_started": started_at, "hostname": None}
    (folder / "status.json").write_text(json.dumps(status))
    return Run(folder)


def test_a_dead_or_reused_pid_reads_as_failed(home: Path) -> None:
    run = hand_written_run(home, "running", pid=os.getpid(), started_at=1.0)  # our pid, another start time
    assert run.status().state == "failed"
    assert run.status().message == (
        f"the training process ended without saving its state; resume it with `gpt2tui runs resume {run.id}`"
    )
    listed = json.loads(gpt2tui("runs", "list", "--json").stdout)
    assert listed[0]["state"] == "failed"


def test_live_runs_cannot_be_removed_or_resumed(home: Path) -> None:
    run = hand_written_run(home, "running", pid=os.getpid(), started_at=start_time(os.getpid()))
    before = tree_snapshot(home)
    removed = gpt2tui("runs", "rm", run.id)
    assert removed.returncode == 2
    assert (
        removed.stderr
        == f"gpt2tui: Run {run.id} is still running; stop it first with `gpt2tui runs stop {run.id}`.\n"
    )
    resumed = gpt2tui("runs", "resume", run.id)
    assert (
        resumed.stderr
        == f"gpt2tui: Run {run.id} is still running (pid {os.getpid()}); there is nothing to resume.\n"
    )
    assert tree_snapshot(home) == before


def test_resume_refuses_a_changed_dataset(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one\n\ntwo\n")
    run = hand_written_run(home, "failed")
    record = json.loads(run.config_path.read_text())
    record["dataset"] = {"path": str(data), "sha256": "not-the-hash"}
    run.config_path.write_text(json.dumps(record))
    resumed = gpt2tui("runs", "resume", run.id)
    assert resumed.returncode == 2
    assert resumed.stderr == (
        f"gpt2tui: The dataset {data} changed since run {run.id} started; resuming would train on other data, "
        "so start a new run instead.\n"
    )
    removed = gpt2tui("runs", "rm", run.id)
    assert removed.returncode == 0 and not run.folder.exists()


def test_an_unknown_run_is_one_sentence(home: Path) -> None:
    shown = gpt2tui("runs", "show", "nope")
    assert shown.returncode == 2
    assert shown.stderr == "gpt2tui: No run 'nope'; 'gpt2tui runs list' shows the runs.\n"


# ------------------------------------------------------------------------------------------- the files


def test_event_log_skips_unknown_types_and_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, "r1")
    log.append(StepLogged(1, 10, 0.1, 2.0, 1e-3, 100.0, 1.0, 9.0))
    log.close()
    with open(path, "a") as handle:
        handle.write(
            json.dumps({"run": "r1", "seq": 2, "time": 1.0, "event": "FromTheFuture", "x": 1}) + "\n"
        )
        handle.write(
            json.dumps({"run": "r1", "seq": 3, "time": 1.0, **event_to_dict(EvalFinished(1, 2.0, 7.4))})
        )
    events, offset = read_events(path)
    assert [type(e.event).__name__ for e in events] == ["StepLogged"]
    assert offset < path.stat().st_size  # the unterminated line waits for its newline
    with open(path, "a") as handle:
        handle.write("\n")
    more, _ = read_events(path, offset)
    assert [type(e.event) for e in more] == [EvalFinished]
    # A new writer (a resumed run) continues the numbering and cuts a half-written line first.
    with open(path, "a") as handle:
        handle.write('{"run": "r1", "se')
    log = EventLog(path, "r1")
    log.append(RunFinished("m", "p", 1, False, 2.0, 1.0, 7.4, 2.7, 10, 5.0, 1.0))
    log.close()
    events, _ = read_events(path)
    assert [e.seq for e in events] == [1, 3, 4]


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, 10, lambda f: (f / "model.safetensors").write_bytes(b"ok"), keep=2)

    def full(target: Path) -> None:
        (target / "model.safetensors").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError) as err:
        save_checkpoint(folder, 20, full, keep=2)
    assert str(err.value) == (
        "Could not write the checkpoint at step 20: the disk is full; free some space, then resume the run."
    )
    assert [c.step for c in complete_checkpoints(folder)] == [10]
    assert sorted(p.name for p in folder.iterdir()) == ["step-10"]
    assert (folder / "step-10" / COMPLETE).is_file()


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(folder, step, lambda f: None, keep=2)
    assert [c.step for c in complete_checkpoints(folder)] == [2, 3]


def test_out_of_memory_names_the_shapes_tried_and_what_to_lower() -> None:
    from gpt2tui.core.training import describe_failure

    class OutOfMemoryError(RuntimeError):
        pass

    message = describe_failure(
        OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        " with batch size 8 and block size 512",
    )
    assert message == (
        "The GPU ran out of memory with batch size 8 and block size 512; lower --batch-size (raising --grad-accum "
        "keeps the tokens per step) or --block-size."
    )


def test_a_suggested_name_avoids_names_live_runs_will_write(home: Path) -> None:
    from gpt2tui.core.launch import suggest_name
    from gpt2tui.core.runs import NAMES_DIR

    run = hand_written_run(home, "running", pid=os.getpid(), started_at=start_time(os.getpid()))
    (home / "runs" / NAMES_DIR).mkdir()
    (home / "runs" / NAMES_DIR / "qa-scratch-tiny").write_text(run.id)
    assert suggest_name("qa-scratch-tiny") == "qa-scratch-tiny-2"
    run.status_path.write_text(json.dumps({"run": run.id, "state": "finished"}))
    assert suggest_name("qa-scratch-tiny") == "qa-scratch-tiny"  # a claim of an ended run is free again


def test_two_resumes_at_once_start_one_worker(home: Path, pids: Started) -> None:
    info = started(str(KJV_TXT), *TINY, "--max-steps", "24", "--save-every", "6", "--name", "twice")
    pids.append(info["pid"])
    run = get_run(info["run"])
    wait_for(lambda: complete_checkpoints(run.checkpoints_dir), "the first checkpoint", poll=0.01)
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: run.status().state == "failed", "the killed run to read as failed")
    command = gpt2tui_command("runs", "resume", run.id, "--json")
    both = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    answers = [p.communicate(timeout=120) for p in both]
    codes = sorted(p.returncode for p in both)
    for out, _ in answers:
        if out:
            pids.append(json.loads(out)["pid"])
    assert codes == [0, 2], answers
    refusal = next(err for _, err in answers if err)
    assert refusal in (
        f"gpt2tui: Run {run.id} is still running; there is nothing to resume.\n",
        f"gpt2tui: Run {run.id} is still running (pid {run.status().pid}); there is nothing to resume.\n",
    )
    assert ended(run.id) == "finished"
    events, _ = run.events()
    assert sum(type(e.event).__name__ == "RunStarted" for e in events) == 2
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_a_resumable_run_keeps_its_model_name(home: Path) -> None:
    run = hand_written_run(home, "failed")
    (home / "runs" / ".names").mkdir()
    (home / "runs" / ".names" / "kept").write_text(run.id)
    refused = gpt2tui("train", str(QA_CSV), *TINY, "--max-steps", "2", "--name", "kept")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gpt2tui: The run {run.id} (failed) will write a model named 'kept' when it is resumed; choose another "
        f"--name or remove that run with `gpt2tui runs rm {run.id}`.\n"
    )
    unnamed = gpt2tui("train", str(QA_CSV), *TINY, "--max-steps", "2", "--name", "other")
    assert unnamed.returncode == 0, unnamed.stderr
    renamed = gpt2tui("models", "rename", "other", "kept")
    assert (
        renamed.returncode == 2
        and f"The run {run.id} (failed) will write a model named 'kept'" in renamed.stderr
    )


def test_attach_reports_the_end_of_the_last_attempt(home: Path) -> None:
    run = hand_written_run(home, "running", pid=os.getpid(), started_at=1.0)  # died: another start time
    log = EventLog(run.events_path, run.id)
    log.append(RunStarted("m", "scratch", "cpu", "no", 10, 5, 1, 64, 512, 1000))
    log.append(RunFinished("m", "p", 4, True, 2.0, 1.0, 7.4, 2.7, 10, 5.0, 1.0))
    log.append(RunStarted("m", "scratch", "cpu", "no", 10, 5, 1, 64, 512, 1000, resumed_from=4))
    log.close()
    attached = gpt2tui("runs", "attach", run.id)
    assert attached.returncode == 2
    assert attached.stderr == f"gpt2tui: Run {run.id} failed: {DIED.format(run=run.id)}.\n"
    assert attached.stdout.count("training m:") == 2


def test_a_run_recorded_on_another_machine_needs_force(home: Path) -> None:
    run = hand_written_run(home, "running", pid=12345, started_at=1.0)
    status = json.loads(run.status_path.read_text())
    run.status_path.write_text(
        json.dumps({**status, "hostname": "oldbox", "updated": "2026-01-01T00:00:00+00:00"})
    )
    resumed = gpt2tui("runs", "resume", run.id)
    assert resumed.returncode == 2
    assert resumed.stderr == (
        f"gpt2tui: Run {run.id} was last seen running on oldbox (pid 12345, updated 2026-01-01T00:00:00+00:00); "
        "resume it there, or add --force if that machine or process is gone.\n"
    )
    forced = gpt2tui("runs", "rm", run.id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not run.folder.exists()


def test_a_resume_computes_with_the_threads_its_run_began_with(home: Path) -> None:
    from gpt2tui.core.launch import recorded_threads

    run = hand_written_run(home, "failed")
    assert recorded_threads(run) is None
    log = EventLog(run.events_path, run.id)
    log.append(RunStarted("m", "scratch", "cpu", "no", 10, 5, 1, 64, 512, 1000, threads=1))
    log.append(RunStarted("m", "scratch", "cpu", "no", 10, 5, 1, 64, 512, 1000, resumed_from=4, threads=2))
    log.close()
    assert recorded_threads(run) == 1
