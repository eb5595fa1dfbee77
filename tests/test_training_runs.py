"""Training with a run folder, in this process: --keep-best, faults while saving, overfitting, config records."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import pytest

from gpt2tui.core import launch
from gpt2tui.core.checkpoints import complete_checkpoints
from gpt2tui.core.config import TrainConfig
from gpt2tui.core.data import DataSpec
from gpt2tui.core.errors import UserError
from gpt2tui.core.events import EvalFinished, RunFinished, overfitting_since
from gpt2tui.core.store import ModelStore
from gpt2tui.core.training import Loop, train
from tests.conftest import QA_CSV


def tiny(**changes) -> TrainConfig:
    options = {"base": "scratch", "max_steps": 12, "log_every": 4, "block_size": 64}
    options.update(changes)
    return TrainConfig(DataSpec(str(QA_CSV)), **options)


def test_keep_best_stores_the_best_evaluation_and_the_card_says_so(home: Path) -> None:
    run = launch.create(tiny(max_steps=150, eval_every=25, keep_best=True, name="best"))
    events: list = []
    result = train(launch.train_config(run), on_event=events.append, run=run)
    evals = [(e.step, e.loss) for e in events if isinstance(e, EvalFinished)]
    best_step, best_loss = min(evals[1:], key=lambda pair: pair[1])
    assert best_step < 150, "this data overfits within 150 steps; the test needs a best before the end"
    assert (result.weights, result.weights_step, result.eval_loss_after) == ("best", best_step, best_loss)
    meta = ModelStore().get("best").metadata
    assert (meta.weights, meta.weights_step, meta.best_step) == ("best", best_step, best_step)
    card = (home / "models" / "best" / "README.md").read_text()
    assert f"the best held-out evaluation (step {best_step})" in card
    # The stored weights really are the best step's: evaluated again on the same held-out blocks.
    assert evals[-1][1] > best_loss
    from gpt2tui.core.evaluation import eval_loader, loss_over
    from gpt2tui.core.models import load_local

    model, _ = load_local(str(home / "models" / "best"))
    from gpt2tui.core.training import prepare

    job = prepare(dataclasses.replace(launch.train_config(run), name="again"), ModelStore(), None, False)
    assert loss_over(model, eval_loader(job.eval_loader.dataset)) == pytest.approx(best_loss, abs=1e-5)


def test_overfitting_is_named_after_two_rises_in_a_row() -> None:
    assert overfitting_since([(0, 5.0), (10, 4.0), (20, 4.1)]) is None
    assert overfitting_since([(0, 5.0), (10, 4.0), (20, 4.1), (30, 4.2)]) == 10
    assert overfitting_since([(0, 5.0), (10, 4.0), (20, 4.1), (30, 3.9)]) is None
    assert overfitting_since([(0, 5.0), (10, 5.1), (20, 5.2)]) == 0


def test_disk_full_during_a_checkpoint_fails_the_run_and_keeps_the_previous_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Loop.write_checkpoint
    calls = {"n": 0}

    def second_fills_the_disk(self: Loop, folder: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            (folder / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, folder)

    monkeypatch.setattr(Loop, "write_checkpoint", second_fills_the_disk)
    run = launch.create(tiny(max_steps=30, save_every=5, name="full"))
    with pytest.raises(UserError) as err:
        train(launch.train_config(run), run=run)
    sentence = (
        "Could not write the checkpoint at step 10: the disk is full; free some space, then resume the run."
    )
    assert str(err.value) == sentence
    status = run.status()
    assert (status.state, status.message) == ("failed", sentence)
    assert [c.step for c in complete_checkpoints(run.checkpoints_dir)] == [5]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["step-5"]
    assert not (home / "models" / "full").exists()


def test_disk_full_while_saving_the_model_leaves_no_half_folder(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gpt2tui.core.store as store_module

    def full(folder: Path, meta: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_description", full)
    run = launch.create(tiny(max_steps=10, save_every=5, name="nosave"))
    with pytest.raises(UserError) as err:
        train(launch.train_config(run), run=run)
    assert (
        str(err.value)
        == "Could not save the model 'nosave': the disk is full; free some space and try again."
    )
    assert run.status().state == "failed"
    assert [p.name for p in (home / "models").iterdir()] == []
    assert [c.step for c in complete_checkpoints(run.checkpoints_dir)] == [5]


def test_the_run_config_is_resolved_and_records_the_step_limit(home: Path) -> None:
    run = launch.create(tiny(max_steps=None, epochs=1.0))
    record = json.loads(run.config_path.read_text())
    assert record["train"]["name"] == "qa-scratch-tiny"
    assert record["train"]["data"]["path"] == str(QA_CSV.resolve())
    result = train(launch.train_config(run), run=run)
    assert isinstance(result, RunFinished)
    meta = ModelStore().get(result.name).metadata
    assert meta.step_limit == "epochs" and meta.hyperparameters["epochs"] == 1.0
    assert meta.hyperparameters["max_steps"] is None
    assert "planned as 1.0 epochs" in (home / "models" / result.name / "README.md").read_text()


def test_a_seed_numpy_cannot_take_is_refused(home: Path) -> None:
    with pytest.raises(UserError) as err:
        tiny(seed=2**32).validate()
    assert str(err.value) == "--seed must be a whole number from 0 to 4294967295, not 4294967296."
