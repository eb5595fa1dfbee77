"""Base resolution: scratch sizes, tokenizers, local folders, the fast Hub probe."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from gpt2tui.core.errors import UserError
from gpt2tui.core.models import (
    SCRATCH_SIZES,
    align_vocab,
    base_kind,
    build_scratch,
    hub_reachable,
    load_local,
    resolve_base,
    train_tokenizer,
)
from tests.conftest import QA_CSV


def test_base_kinds(tmp_path: Path) -> None:
    assert base_kind("scratch") == "scratch"
    assert base_kind("gpt2") == "hub"
    assert base_kind("openai-community/gpt2") == "hub"
    assert base_kind(str(tmp_path)) == "local"
    assert base_kind("./missing") == "local"


def test_trained_tokenizer_is_byte_level_with_end_of_text() -> None:
    tok = train_tokenizer([QA_CSV.read_text()], 500, 128)
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"
    text = "Ünïcode survives, and so do    spaces.\n"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok("a<|endoftext|>b")["input_ids"][1] == tok.eos_token_id


def test_scratch_tiny_shape_and_vocab_match() -> None:
    model, tok = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    shape = SCRATCH_SIZES["tiny"]
    assert model.config.n_layer == shape.n_layer and model.config.n_positions == shape.n_positions
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_embedding_grows_when_the_tokenizer_is_larger() -> None:
    model, tok = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    tok.add_tokens(["<extra-1>", "<extra-2>"])
    align_vocab(model, tok)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_local_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^No model folder at .*missing\.$"):
        resolve_base(str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"is not a model folder: it has no config.json\.$"):
        load_local(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match=r"has no \.safetensors weights"):
        load_local(str(tmp_path))


def test_hub_probe_gives_up_quickly_on_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts but never answers (a black-holed network) must not hold the user up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted: list = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    assert hub_reachable(timeout=1.0) is False  # bounded by the timeout, not by the silent server
    server.close()


def test_hub_probe_answers_false_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False


def test_unknown_hub_id_when_the_hub_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a reachable Hub that does not know the id, the message says so (probe and download faked)."""
    from gpt2tui.core import models

    def not_found(ref: str, local_only: bool):
        if local_only:
            raise OSError("not cached")
        raise OSError(f"{ref} is not a local folder and is not a valid model identifier listed on the Hub")

    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(models, "_load_pair", not_found)
    with pytest.raises(UserError) as info:
        models.load_hub("no-such-model-xyz")
    assert str(info.value) == (
        "'no-such-model-xyz' is not a model on the Hugging Face Hub; check the id (for example gpt2 or distilgpt2), "
        "or use a local save_pretrained folder (--base PATH) or train a new model (--base scratch)."
    )


def test_a_cached_hub_model_loads_with_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub cache layout (models--ID/refs + snapshots) is used offline, without the probe."""
    import shutil

    from huggingface_hub import constants

    from gpt2tui.core import models

    model, tokenizer = build_scratch([QA_CSV.read_text()], "tiny", seed=0)
    # huggingface_hub fixes its cache path at import; a unique id keeps other tests' 'gpt2' uncached.
    repo = Path(constants.HF_HUB_CACHE) / "models--gpt2tui-test--cached-tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)

    def no_probe(timeout: float = 3.0) -> bool:
        raise AssertionError("a cached model must load without probing the Hub")

    monkeypatch.setattr(models, "hub_reachable", no_probe)
    try:
        resolved = resolve_base("gpt2tui-test/cached-tiny")
    finally:
        shutil.rmtree(repo)
    assert resolved.kind == "hub" and resolved.model.config.n_layer == SCRATCH_SIZES["tiny"].n_layer
