"""The incremental streamer: the same text as one decode of all the ids, at a constant cost per token.

HF's ``TextIteratorStreamer`` re-decodes its whole token cache every token until a newline; ours decodes a
window of a few tokens. These tests check the output byte for byte against ``tokenizer.decode(all_ids)`` on a
byte-level BPE trained here (ordinary text, thousands of tokens with no newline, emoji and CJK split across
tokens, random ids), that a character split across tokens is held until it is whole, and that the window
never grows with the reply (the decode calls' lengths, not a timing).
"""

from __future__ import annotations

import queue
import random
from collections.abc import Iterable
from typing import Any

import pytest

from gpt2tui.core import generation
from gpt2tui.core.generation import GenerationSettings, incremental_streamer, stream
from gpt2tui.core.models import train_tokenizer

MULTILINGUAL = (
    "In the beginning God created the heaven and the earth. 🌍 The earth was without form; "
    "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。 Emoji: 😀😃😄 👩‍👩‍👧 🇫🇷 — «café» naïve façade Ωμέγα\n"
    "Здравствуй, мир! こんにちは世界 안녕하세요 🎉🎉 end.\n"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A byte-level BPE (GPT-2's scheme, as scratch models use) trained on mixed scripts."""
    return train_tokenizer([MULTILINGUAL * 20], vocab_size=400, model_max_length=100_000)


def byte_ids(tokenizer: Any, data: bytes) -> list[int]:
    """One token per byte: the ids of the byte-level alphabet (splits every multi-byte character)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [tokenizer.convert_tokens_to_ids(table[b]) for b in data]


def streamed(tokenizer: Any, ids: Iterable[int], prompt: Iterable[int] = (0,)) -> list[str]:
    """Feed ``ids`` one token at a time, as ``generate`` does, and collect every chunk put in the queue."""
    import torch

    streamer = incremental_streamer()(tokenizer, skip_prompt=True, skip_special_tokens=True)
    streamer.put(torch.tensor([list(prompt)]))
    chunks: list[str] = []
    for token in ids:
        streamer.put(torch.tensor([token]))
        chunks.extend(drain(streamer))
    streamer.end()
    chunks.extend(drain(streamer))
    return chunks


def drain(streamer: Any) -> list[str]:
    out: list[str] = []
    while True:
        try:
            item = streamer.text_queue.get_nowait()
        except queue.Empty:
            return out
        if item is not streamer.stop_signal:
            out.append(item)


def whole(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def test_is_a_text_iterator_streamer() -> None:
    from transformers import TextIteratorStreamer

    assert issubclass(incremental_streamer(), TextIteratorStreamer)


def test_ordinary_text_is_the_same_as_one_decode(tokenizer: Any) -> None:
    ids = tokenizer(MULTILINGUAL * 3, add_special_tokens=False)["input_ids"]
    chunks = streamed(tokenizer, ids)
    assert "".join(chunks) == whole(tokenizer, ids)
    assert len(chunks) > len(ids) // 2  # it streams token by token, not word by word


def test_thousands_of_tokens_without_a_newline(tokenizer: Any) -> None:
    text = MULTILINGUAL.replace("\n", " ") * 40
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 3000 and "\n" not in whole(tokenizer, ids)
    assert "".join(streamed(tokenizer, ids)).encode() == whole(tokenizer, ids).encode()


def test_a_character_split_across_tokens_is_held_until_it_is_whole(tokenizer: Any) -> None:
    a, b = byte_ids(tokenizer, b"a"), byte_ids(tokenizer, b"b")
    han = byte_ids(tokenizer, "中".encode())  # 3 bytes, 3 tokens
    grin = byte_ids(tokenizer, "😀".encode())  # 4 bytes, 4 tokens
    ids = a + han + b + grin + grin + han[:2]  # ends mid-character
    chunks = streamed(tokenizer, ids)
    expected = whole(tokenizer, ids)
    assert expected == "a中b😀😀\ufffd"
    assert "".join(chunks) == expected
    assert chunks[:4] == ["a", "中", "b", "😀"]  # nothing half-made was shown
    assert not any(c.endswith("\ufffd") for c in chunks[:-1])


def test_invalid_bytes_decode_as_one_decode_does(tokenizer: Any) -> None:
    # A lone continuation byte, a truncated 4-byte start followed by ASCII, a stray start byte at the end.
    cases = [b"x\x80y", b"\xf0\x9f\x98z", b"ok\xe4", "é".encode() + b"\xbf\xbf" + "é".encode()]
    for data in cases:
        ids = byte_ids(tokenizer, data)
        assert "".join(streamed(tokenizer, ids)) == whole(tokenizer, ids), data


def test_bytes_that_never_make_a_character_still_stream_in_a_small_window(
    tokenizer: Any, monkeypatch: Any
) -> None:
    """An untrained model may repeat a lead byte: each becomes U+FFFD for good, and must not be held."""
    sizes: list[int] = []
    real = tokenizer.decode

    def spy(ids: list[int], **kwargs: Any) -> str:
        sizes.append(len(ids))
        return str(real(ids, **kwargs))

    ids = byte_ids(tokenizer, b"\xe2" * 3000 + "中".encode() + b"\xf0\x9f" * 500 + b"!")
    monkeypatch.setattr(tokenizer, "decode", spy)
    chunks = streamed(tokenizer, ids)
    monkeypatch.undo()
    assert "".join(chunks) == whole(tokenizer, ids)
    assert len(chunks) > 500 and max(sizes) <= 12


def test_random_ids_including_special_tokens(tokenizer: Any) -> None:
    rng = random.Random(8)
    for _ in range(5):
        ids = [rng.randrange(len(tokenizer)) for _ in range(1500)]
        assert "".join(streamed(tokenizer, ids)) == whole(tokenizer, ids)


def test_the_decoded_window_does_not_grow_with_the_reply(tokenizer: Any, monkeypatch: Any) -> None:
    """Constant cost per token: every decode call sees a few ids, however long the reply (HF's saw all)."""
    sizes: list[int] = []
    real = tokenizer.decode

    def spy(ids: list[int], **kwargs: Any) -> str:
        sizes.append(len(ids))
        return str(real(ids, **kwargs))

    monkeypatch.setattr(tokenizer, "decode", spy)
    ids = real_ids = tokenizer(MULTILINGUAL.replace("\n", " ") * 30, add_special_tokens=False)["input_ids"]
    chunks = streamed(tokenizer, ids)
    monkeypatch.undo()
    assert "".join(chunks) == whole(tokenizer, real_ids)
    # The window is the tokens of the last emitted characters plus those of the next one: a handful of byte
    # tokens at most for a 4-byte emoji split byte by byte, the same at the 3,000th token as at the first.
    assert len(ids) > 2000 and max(sizes) <= 12
    assert max(sizes[-1000:]) <= max(sizes[:1000])


def test_a_reply_streams_split_characters_through_the_core(tokenizer: Any) -> None:
    """A scripted model whose reply splits emoji across tokens: the chunks and the reply equal one decode."""
    import torch

    reply_ids = (
        byte_ids(tokenizer, "Hé 😀 中文".encode()) + tokenizer("ok", add_special_tokens=False)["input_ids"]
    )

    class Scripted:
        config = type("Config", (), {"n_positions": 1024})()

        def parameters(self) -> Iterable[Any]:
            yield torch.zeros(1)

        def generate(self, input_ids: Any, streamer: Any = None, **kwargs: Any) -> Any:
            out = torch.cat([input_ids, torch.tensor([reply_ids])], dim=1)
            streamer.put(input_ids[0])
            for token in reply_ids:
                streamer.put(torch.tensor([token]))
            streamer.end()
            return out

    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    s = stream(Scripted(), tokenizer, "hi", settings)  # type: ignore[arg-type]
    chunks = list(s)
    assert "".join(chunks) == s.reply.text == whole(tokenizer, reply_ids) == "Hé 😀 中文ok"
    assert s.reply.new_tokens == len(reply_ids) and s.reply.seed == 3
    assert not any("\ufffd" in c for c in chunks)


def test_the_core_uses_the_incremental_streamer(tokenizer: Any, monkeypatch: Any) -> None:
    seen: list[type] = []
    cls = incremental_streamer()

    class Spy(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(type(self))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(generation, "incremental_streamer", lambda: Spy)
    test_a_reply_streams_split_characters_through_the_core(tokenizer)
    assert seen == [Spy]


async def test_the_transcript_wraps_a_long_reply_as_a_whole_wrap_would() -> None:
    """Appends re-wrap only the last line; the lines must equal wrapping the whole text at once."""
    from rich.text import Text
    from textual.app import App, ComposeResult

    from gpt2tui.ui.widgets.transcript import Transcript

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Transcript()

    rng = random.Random(5)
    pieces = ["rade", " the", " ", "  ", "Ωμέγα", "中文字", "😀", ",", "x" * 130, " a" * 7, "\n", "é"]
    async with Host().run_test(size=(60, 20)) as pilot:
        transcript = pilot.app.query_one(Transcript)
        await pilot.pause()
        transcript.write("question", prefix="you ▸ ")
        reply = transcript.open(Text("model ▸ ", style="bold"))
        sent = [rng.choice(pieces) for _ in range(1500)]
        for piece in sent:
            transcript.append(piece, style=rng.choice([None, "bold"]))
        assert transcript.entry_text(reply) == "model ▸ " + "".join(sent)  # each piece once, in order
        incremental = [strip.text for strip in transcript._strips]
        wrapped = transcript.lines_wrapped
        transcript._rewrap_all()
        assert incremental == [strip.text for strip in transcript._strips]
        assert len(incremental) > 100 and wrapped < 6 * 1500  # a few lines per append, not the paragraph
        transcript.close()
        transcript.open("model ▸ ")
        before = transcript.lines_wrapped
        for _ in range(2000):  # an untrained model's reply: one word, no space, no newline
            transcript.append("rade")
        assert transcript.lines_wrapped - before <= 2 * 2000  # the whole-paragraph re-wrap made ~130,000
        incremental = [strip.text for strip in transcript._strips]
        transcript._rewrap_all()
        assert incremental == [strip.text for strip in transcript._strips]


async def test_text_streamed_after_a_newline_is_shown_once() -> None:
    """A paragraph after a newline was kept for re-wrapping as the same object as the paragraph itself, so
    every later append landed in it twice: 'three four four five five'."""
    from textual.app import App, ComposeResult

    from gpt2tui.ui.widgets.transcript import Transcript

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Transcript()

    chunks = ["one two", "\nthree", " four", " five", "\n", "six", " seven", "\n\n  eight", " nine"]
    async with Host().run_test(size=(60, 20)) as pilot:
        transcript = pilot.app.query_one(Transcript)
        await pilot.pause()
        for prefix in ("bot ▸ ", ""):
            reply = transcript.open(prefix)
            for chunk in chunks:
                transcript.append(chunk)
            transcript.close()
            assert (
                transcript.entry_text(reply) == prefix + "one two\nthree four five\nsix seven\n\n  eight nine"
            )


async def test_control_characters_a_model_generates_are_drawn_as_symbols() -> None:
    """An escape sent raw starts a terminal sequence (an untrained model's reply broke the pane's border)."""
    from rich.text import Text
    from textual.app import App, ComposeResult

    from gpt2tui.ui.widgets.transcript import Transcript
    from tests.screen_text import screen_rows

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Transcript()

    async with Host().run_test(size=(60, 10)) as pilot:
        transcript = pilot.app.query_one(Transcript)
        await pilot.pause()
        transcript.write("a\x1b]0;title\x07 prompt", prefix="you ▸ ")
        reply = transcript.open("bot ▸ ")
        for chunk in ("Isine\x1b", "[31mreward", "\x9b2J\x7f\r", "\tend\nnext"):
            transcript.append(chunk)
        transcript.close()
        assert transcript.entry_text(0) == "you ▸ a␛]0;title␇ prompt"
        assert transcript.entry_text(reply) == "bot ▸ Isine␛[31mreward�2J␡␍\tend\nnext"
        await pilot.pause()
        rows = screen_rows(pilot.app)
        assert any("bot ▸ Isine␛[31mreward�2J␡␍" in row for row in rows)
        assert not any(ch < " " or "\x7f" <= ch <= "\x9f" for row in rows for ch in row)
        transcript.replace_entry(reply, Text("x\x1by", style="bold"))  # a finished reply, coloured
        assert transcript.entry_text(reply) == "bot ▸ x␛y"


def test_token_pieces_join_to_one_decode_and_split_characters_go_to_the_completing_token(
    tokenizer: Any,
) -> None:
    """Each token's own text, for colouring a reply by probability: nothing lost, nothing half-made."""
    from gpt2tui.core.generation import token_pieces

    a, b = byte_ids(tokenizer, b"a"), byte_ids(tokenizer, b"b")
    grin = byte_ids(tokenizer, "😀".encode())  # 4 bytes, 4 tokens
    ids = a + grin + b
    assert token_pieces(tokenizer, ids) == ["a", "", "", "", "😀", "b"]
    text_ids = tokenizer(MULTILINGUAL * 2, add_special_tokens=False)["input_ids"]
    pieces = token_pieces(tokenizer, text_ids)
    assert len(pieces) == len(text_ids)
    assert "".join(pieces) == whole(tokenizer, text_ids)
    assert token_pieces(tokenizer, []) == []


def test_the_streamer_queues_every_token_once_with_the_text_it_completes(tokenizer: Any) -> None:
    """Each queued chunk carries the ids it decodes: a split character's leading bytes add "", the byte that
    completes it the character; an id that adds no text is still queued, once."""
    from gpt2tui.core.generation import Chunk

    a, b = byte_ids(tokenizer, b"a"), byte_ids(tokenizer, b"b")
    han, grin = byte_ids(tokenizer, "中".encode()), byte_ids(tokenizer, "😀".encode())
    ids = a + han + b + grin + [tokenizer.eos_token_id] + b + han[:2]  # ends mid-character
    chunks = streamed(tokenizer, ids)
    assert all(isinstance(chunk, Chunk) for chunk in chunks)
    tokens = [token for chunk in chunks for token in chunk.tokens]
    assert [t.id for t in tokens] == ids
    assert [t.text for t in tokens] == ["a", "", "", "中", "b", "", "", "", "😀", "", "b", "", "\ufffd"]
    assert all("".join(t.text for t in chunk.tokens) == chunk for chunk in chunks)
    assert all(t.logprob is None and t.model_logprob is None for t in tokens)  # the streamer never sees them
    rng = random.Random(3)
    stuck = byte_ids(tokenizer, b"\xe2" * 40 + "中".encode() + b"\xf0\x9f" * 20 + b"!")
    for ids in (stuck, [rng.randrange(len(tokenizer)) for _ in range(1500)]):
        chunks = streamed(tokenizer, ids)
        assert [t.id for chunk in chunks for t in chunk.tokens] == ids
        assert all("".join(t.text for t in chunk.tokens) == chunk for chunk in chunks)
        assert "".join(chunks) == whole(tokenizer, ids)


class ChoosingScripted:
    """A model that says ``reply_ids`` through ``generate``'s own hooks, as ``generate`` calls them: each token
    is chosen by the stream's logits processor (the chooser) from scores that favour it, put in the streamer,
    and the stopping criteria can end the reply after any token."""

    config = type("Config", (), {"n_positions": 1024})()

    def __init__(self, reply_ids: list[int], vocab: int) -> None:
        self.reply_ids = reply_ids
        self.vocab = vocab

    def parameters(self) -> Iterable[Any]:
        import torch

        yield torch.zeros(1)

    def scores(self, position: int) -> Any:
        """The scores at ``position``: the scripted token ahead by a margin that varies with the position."""
        import torch

        scores = torch.zeros(1, self.vocab)
        scores[0, self.reply_ids[position]] = 3.0 + position % 4
        return scores

    def generate(
        self, input_ids: Any, streamer: Any, logits_processor: Any, stopping_criteria: Any, **kwargs: Any
    ) -> Any:
        import torch

        ids = input_ids
        streamer.put(input_ids.cpu())
        for position in range(len(self.reply_ids)):
            scores = logits_processor(ids, self.scores(position))
            chosen = scores.argmax(dim=-1)
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            streamer.put(chosen)
            if stopping_criteria(ids, scores).all():
                break
        streamer.end()
        return ids


def scripted_reply(tokenizer: Any) -> list[int]:
    """ "Hé 😀 中文" one byte a token (three characters split), then ordinary BPE tokens."""
    return (
        byte_ids(tokenizer, "Hé 😀 中文".encode())
        + tokenizer(" the earth created the heaven", add_special_tokens=False)["input_ids"]
    )


def test_chunks_carry_the_tokens_the_stream_chose_with_their_log_probabilities(tokenizer: Any) -> None:
    import torch

    from tests.chunk_checks import assert_chunks_are_the_reply

    reply_ids = scripted_reply(tokenizer)
    model = ChoosingScripted(reply_ids, len(tokenizer))
    expected = [
        float(torch.log_softmax(model.scores(i), dim=-1)[0, token]) for i, token in enumerate(reply_ids)
    ]
    greedy = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    s = stream(model, tokenizer, "hi", greedy)  # type: ignore[arg-type]
    chunks = list(s)
    tokens = assert_chunks_are_the_reply(chunks, s.reply, tokenizer=tokenizer)
    assert s.reply.text == "Hé 😀 中文 the earth created the heaven"
    assert [t.id for t in tokens] == reply_ids
    assert [t.logprob for t in tokens] == [t.model_logprob for t in tokens] == pytest.approx(expected)
    assert [t.text for t in tokens][:12] == ["H", "", "é", " ", "", "", "", "😀", " ", "", "", "中"]
    assert not any("\ufffd" in chunk for chunk in chunks)
    # Sampling from one candidate: drawn with certainty (log-probability 0), under the model as scripted.
    top_1 = GenerationSettings(strategy="top-k", top_k=1, temperature=0.5, max_new_tokens=50, seed=3)
    s = stream(model, tokenizer, "hi", top_1)  # type: ignore[arg-type]
    tokens = assert_chunks_are_the_reply(list(s), s.reply, tokenizer=tokenizer)
    assert [t.logprob for t in tokens] == [0.0] * len(reply_ids)
    assert [t.model_logprob for t in tokens] == pytest.approx(expected)


def scripted_stream(
    tokenizer: Any,
    reply_ids: list[int],
    settings: GenerationSettings,
    stop_text: str,
    batch_seconds: float = 0.0,
) -> Any:
    """The stream of a scripted model that replies ``reply_ids`` through ``generate``'s own hooks."""
    model = ChoosingScripted(reply_ids, len(tokenizer))
    return stream(model, tokenizer, "hi", settings, stop_text=stop_text, batch_seconds=batch_seconds)  # type: ignore[arg-type]


def test_a_stop_text_that_cuts_a_token_keeps_every_generated_token(tokenizer: Any) -> None:
    """The stop text "ea" starts inside the token " earth": " " is shown, "earth" never; the cut chunk (and a
    last chunk with no text, for tokens made before the stop was noticed) carries the tokens all the same."""
    from tests.chunk_checks import assert_chunks_are_the_reply

    reply_ids = scripted_reply(tokenizer)
    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    for batch_seconds in (0.0, 0.05):
        s = scripted_stream(tokenizer, reply_ids, settings, "ea", batch_seconds)
        chunks = list(s)
        assert s.reply.text == "Hé 😀 中文 the "
        tokens = assert_chunks_are_the_reply(chunks, s.reply, tokenizer=tokenizer, cut=True)
        assert [t.id for t in tokens] == reply_ids[: len(tokens)]
        assert "".join(t.text for t in tokens).startswith("Hé 😀 中文 the earth")


def test_generation_ends_at_the_token_that_completes_the_stop_text_whatever_the_readers_pace(
    tokenizer: Any,
) -> None:
    """The generating thread notices the stop text itself: no tokens after it are generated (their number
    depended on when the reader looked, so a reply's token count and the prompt cache varied by timing)."""
    reply_ids = scripted_reply(tokenizer)
    completing = next(n for n in range(len(reply_ids) + 1) if "ea" in tokenizer.decode(reply_ids[:n]))
    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    for batch_seconds in (0.0, 0.3):  # a reader that reads at once, and one that looks three times a second
        s = scripted_stream(tokenizer, reply_ids, settings, "ea", batch_seconds)
        assert "".join(s) == s.reply.text == "Hé 😀 中文 the "
        assert s.reply.new_tokens == completing < len(reply_ids)


def test_text_held_back_as_a_possible_stop_text_rides_with_the_chunk_that_shows_it(tokenizer: Any) -> None:
    from tests.chunk_checks import assert_chunks_are_the_reply

    reply_ids = byte_ids(tokenizer, b" yes\nQuiet\nQuestion: more")  # "\nQu" might start the stop text
    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    s = scripted_stream(tokenizer, reply_ids, settings, "\nQuestion:")
    chunks = list(s)
    assert s.reply.text == " yes\nQuiet"
    assert_chunks_are_the_reply(chunks, s.reply, tokenizer=tokenizer, cut=True)
    held = next(chunk for chunk in chunks if "\n" in chunk)
    assert "\nQui" in held  # "\n", "Q" and "u" were shown, with their tokens, once "i" ruled out the stop
    assert not any(chunk.endswith(("\n", "\nQ", "\nQu")) for chunk in chunks)


class SlowToStop(ChoosingScripted):
    """Says every scripted token, as ``generate`` does when the stop is noticed only after a few more steps."""

    def generate(self, *args: Any, stopping_criteria: Any, **kwargs: Any) -> Any:
        return super().generate(*args, stopping_criteria=lambda ids, scores: torch_false(), **kwargs)


def torch_false() -> Any:
    import torch

    return torch.tensor([False])


def test_a_grid_cell_cut_by_its_stop_text_counts_only_the_tokens_it_shows(tokenizer: Any) -> None:
    """Tokens generated while the stop was being noticed depend on timing: the cell's token count, diversity
    and coherence leave them out (they would differ from run to run), as ``eval --generate`` does."""
    from pathlib import Path

    from gpt2tui.core.card import FormattingRecord, ModelMetadata
    from gpt2tui.core.compare import reply_cell
    from gpt2tui.core.generation import LoadedModel, stream
    from gpt2tui.core.metrics import mean_token_logprob

    reply_ids = scripted_reply(tokenizer)
    model = SlowToStop(reply_ids, len(tokenizer))
    metadata = ModelMetadata(formatting=FormattingRecord(kind="text", stop_text="ea"))
    loaded = LoadedModel("scripted", Path("."), model, tokenizer, metadata)  # type: ignore[arg-type]
    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    s = stream(model, tokenizer, "hi", settings, stop_text="ea")  # type: ignore[arg-type]
    assert "".join(s) == s.reply.text == "Hé 😀 中文 the "
    assert s.reply.new_tokens == len(reply_ids)  # " earth" and every token after it were generated
    shown = s.reply.shown_tokens
    # The last shown token is the one the stop text cut (" earth": its space is shown), none after it.
    assert tokenizer.decode(reply_ids[:shown]) == "Hé 😀 中文 the earth"
    assert len(tokenizer.decode(reply_ids[: shown - 1])) < len(s.reply.text)
    cell = reply_cell("greedy", loaded, "hi", settings)
    assert cell.text == s.reply.text and cell.new_tokens == shown < len(reply_ids)
    assert cell.mean_token_logprob == pytest.approx(mean_token_logprob([s.reply.model_logprobs[:shown]]))


def counting_model(tokenizer: Any, reply_ids: list[int], computed: list[int]) -> Any:
    """A scripted model that records each token as it computes it, before handing it to the streamer."""
    import torch

    class Counting:
        config = type("Config", (), {"n_positions": 1024})()

        def parameters(self) -> Iterable[Any]:
            yield torch.zeros(1)

        def generate(self, input_ids: Any, streamer: Any = None, **kwargs: Any) -> Any:
            streamer.put(input_ids[0])
            for token in reply_ids:
                computed.append(token)
                streamer.put(torch.tensor([token]))
            streamer.end()
            return torch.cat([input_ids, torch.tensor([reply_ids])], dim=1)

    return Counting()


@pytest.mark.parametrize("handoff", ["wait", "capped", "off"])
def test_the_first_token_is_handed_over_before_the_next_is_computed(
    tokenizer: Any, monkeypatch: Any, handoff: str
) -> None:
    """After the first token the generating thread waits for the reader to take its text (on two cores its
    torch threads would otherwise delay the reader), for at most ``HANDOFF_SECONDS``; GPT2TUI_HANDOFF=default
    turns the wait off. The reply is the same in every case."""
    import time

    reply_ids = tokenizer(" In the beginning God created", add_special_tokens=False)["input_ids"]
    computed: list[int] = []
    if handoff == "wait":
        monkeypatch.setattr(generation, "HANDOFF_SECONDS", 60.0)  # longer than the reader is slow
    if handoff == "off":
        monkeypatch.setenv("GPT2TUI_HANDOFF", "default")
    settings = GenerationSettings(strategy="greedy", max_new_tokens=50, seed=3)
    s = stream(counting_model(tokenizer, reply_ids, computed), tokenizer, "hi", settings)  # type: ignore[arg-type]
    chunks = iter(s)
    first = next(chunks)
    time.sleep(0.3)  # a slow reader, holding the first text
    computed_while_held = len(computed)
    rest = list(chunks)
    assert "".join([first, *rest]) == s.reply.text == whole(tokenizer, reply_ids)
    if handoff == "wait":
        assert computed_while_held == 1  # the next token waits for the reader
    else:
        assert computed_while_held == len(reply_ids)  # never longer than the cap, or not at all
