"""What every stream's chunks must be (``core.generation.Chunk``): ``str`` s joining to the reply's text, and
tokens that are exactly the reply's own, in order, with the log-probabilities the generation recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
