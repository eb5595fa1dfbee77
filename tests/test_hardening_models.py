"""Model folders: only safetensors weights are ever loaded, and unreadable files say so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2tui.core.errors import UserError
from gpt2tui.core.models import build_scratch, load_local, load_model, resolve_base, resolve_tokenizer
from tests.conftest import QA_CSV, ROOT, tree_snapshot

INDEX = "model.safetensors.index.json"
RESAVE = "save it with save_pretrained(safe_serialization=True)"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny scratch model saved the normal way (one model.safetensors)."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    model, tokenizer = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def folder(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


@pytest.fixture
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything reaches ``torch.load`` (pickle)."""
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"torch.load reached with {args[:1]}")

    monkeypatch.setattr(torch, "load", refuse)


def write_index(folder: Path, files: list[str]) -> Path:
    """An index whose weight_map spreads the model's tensors over ``files``."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
    weight_map = {name: files[i % len(files)] for i, name in enumerate(names)}
    index = folder / INDEX
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def refusal(folder: Path, load=load_local) -> str:
    before = tree_snapshot(folder)
    with pytest.raises(UserError) as info:
        load(str(folder))
    assert tree_snapshot(folder) == before
    return str(info.value)


def test_an_index_pointing_at_pickled_weights_is_refused_before_torch_load(
    folder: Path, no_pickle: None
) -> None:
    import torch

    model, _ = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    index = write_index(folder, ["pytorch_model.bin"])
    (folder / "model.safetensors").rename(folder / "dummy.safetensors")
    with open(folder / "pytorch_model.bin", "wb") as out:  # a real pickle, as an attacker would leave it
        torch.save(model.state_dict(), out)
    expected = (
        f"{index} names 'pytorch_model.bin' as a weights file, but only .safetensors weights are loaded; "
        f"{RESAVE}."
    )
    assert refusal(folder) == expected
    for load in (lambda f: load_model(Path(f)), resolve_base, resolve_tokenizer):
        assert refusal(folder, load) == expected


@pytest.mark.parametrize(
    ("shard", "problem"),
    [
        ("../outside.safetensors", "which is not a file name inside {folder}"),
        ("/tmp/elsewhere.safetensors", "which is not a file name inside {folder}"),
        ("sub/inner.safetensors", "which is not a file name inside {folder}"),
        ("missing.safetensors", "which is not in {folder}"),
    ],
)
def test_an_index_must_name_safetensors_files_in_the_folder(
    folder: Path, no_pickle: None, shard: str, problem: str
) -> None:
    index = write_index(folder, [shard])
    (folder / "model.safetensors").unlink()
    reason = problem.format(folder=folder)
    assert refusal(folder) == f"{index} names '{shard}', {reason}; {RESAVE}."


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "has no weight_map"),
        ('{"metadata": {}}', "has no weight_map"),
        ('{"weight_map": {}}', "has no weight_map"),
    ],
)
def test_a_broken_index_is_refused(folder: Path, content: str, reason: str) -> None:
    (folder / INDEX).write_text(content)
    assert refusal(folder) == f"{folder / INDEX} {reason}; {RESAVE}."


def test_a_sharded_safetensors_folder_loads(folder: Path, no_pickle: None) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "model.safetensors").unlink()
    model, _ = load_local(str(folder))
    assert model.config.n_layer == 2


def test_a_stray_safetensors_file_is_not_weights(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "dummy.safetensors")
    assert refusal(folder) == (f"{folder} has no model.safetensors or {INDEX}; {RESAVE}.")


# ------------------------------------------------------------------------------------------ permissions

PROBE = """
import sys
from gpt2tui.core.errors import UserError
from gpt2tui.core.models import load_local
try:
    open(sys.argv[1], "rb").close()
    print("READABLE")
except PermissionError:
    try:
        load_local(sys.argv[2])
        print("LOADED")
    except UserError as err:
        print(err)
"""


def run_unprivileged(args: list[str]) -> str:
    """Run PROBE where file permissions apply: as root, without the capabilities that bypass them."""
    command = [sys.executable, "-c", PROBE, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be tested")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    if done.returncode != 0 and "setpriv" in done.stderr:
        pytest.skip(f"setpriv could not drop capabilities: {done.stderr.strip()}")
    out = done.stdout.strip().splitlines()
    assert out, done.stderr
    if out[-1] == "READABLE":
        pytest.skip("file permissions are not enforced for this user")
    return out[-1]


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_an_unreadable_file_says_permission_denied(folder: Path, name: str) -> None:
    target = folder / name
    target.chmod(0)
    try:
        message = run_unprivileged([str(target), str(folder)])
    finally:
        target.chmod(0o644)
    assert message == f"{target} cannot be read: permission denied; give your user read access to it."
