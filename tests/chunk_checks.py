"""What every stream's chunks must be (``core.generation.Chunk``): ``str`` s joining to the reply's text, and
tokens that are exactly the reply's own, in order, with the log-probabilities the generation recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from gpt2tui.core.generation import Chunk, Reply, Token, token_pieces


def tokens_of(chunks: Sequence[str]) -> list[Token]:
    return [token for chunk in chunks for token in getattr(chunk, "tokens", ())]


def assert_chunks_are_the_reply(
    chunks: Sequence[Any], reply: Reply, *, tokenizer: Any, cut: bool = False
) -> list[Token]:
    """The chunks join to the text, their tokens are ``reply.tokens`` (ids and log-probabilities, both kinds)
    and ``reply.pieces`` (which equal ``token_pieces`` decoding the ids afresh), and each chunk's tokens' texts join to its text (``cut``: the reply was cut by a
    stop text, so from the chunk it cut on, the tokens' texts only start with the chunks' text)."""
    assert chunks and all(isinstance(chunk, Chunk) and isinstance(chunk, str) for chunk in chunks)
    assert "".join(chunks) == reply.text
    tokens = tokens_of(chunks)
    assert len(tokens) == reply.new_tokens > 0
    assert [(t.id, t.logprob) for t in tokens] == [tuple(pair) for pair in reply.tokens]
    assert [t.model_logprob for t in tokens] == reply.model_logprobs
    assert [t.text for t in tokens] == reply.pieces == token_pieces(tokenizer, [t.id for t in tokens])
    assert all(t.logprob is not None and t.logprob <= 0 for t in tokens)
    whole = [i for i, chunk in enumerate(chunks) if "".join(t.text for t in chunk.tokens) == chunk]
    if not cut:
        assert whole == list(range(len(chunks)))
    else:
        first_cut = next(i for i in range(len(chunks)) if i not in whole)  # the chunks before it are whole
        assert "".join(chunks[first_cut + 1 :]) == ""  # after it, only tokens come (and no text)
        rest = "".join(t.text for chunk in chunks[first_cut:] for t in chunk.tokens)
        assert rest.startswith(chunks[first_cut]) and len(rest) > len(chunks[first_cut])
    return tokens


def assert_same_tokens(a: Sequence[Token], b: Sequence[Token]) -> None:
    """The same tokens (ids and texts) with the same log-probabilities to within float rounding: a model
    that kept an earlier generation's keys and values (``core.prompt_cache``) computes the rest of the
    prompt in a smaller batch, whose sums round differently in the last bits."""
    assert [(t.id, t.text) for t in a] == [(t.id, t.text) for t in b]
    for kind in ("logprob", "model_logprob"):
        x, y = [getattr(t, kind) for t in a], [getattr(t, kind) for t in b]
        assert [v is None for v in x] == [v is None for v in y]
        assert [v for v in x if v is not None] == pytest.approx([v for v in y if v is not None], abs=1e-5)
