"""What to expect of a stored model, said plainly before the user chats with it: whether its run was stopped
early, and whether it is too small to write sense. The home screen shows these; the chat can use them too."""

from __future__ import annotations

from gpt2tui.core.card import ModelMetadata, stopped_note

SIZE_NOTES = {
    "tiny": "a tiny model trained from scratch: gibberish is expected at its size (it learns the shape of "
    "its data, not its facts)",
    "small": "a small model trained from scratch: mostly gibberish is expected at its size unless it trained "
    "long on a lot of text",
}
"""Per scratch size, what its replies will be like; pretrained bases and the full gpt2 shape get no note."""


def size_note(meta: ModelMetadata) -> str | None:
    """Why replies will be gibberish, for a model trained from scratch at a small size; else None."""
    if "scratch" not in (meta.base, meta.base_kind):
        return None
    return SIZE_NOTES.get(meta.scratch_size or "")


def expectations(meta: ModelMetadata) -> list[str]:
    """Every note that applies, most important first."""
    return [note for note in (stopped_note(meta), size_note(meta)) if note]
