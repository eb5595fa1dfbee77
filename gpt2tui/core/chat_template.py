"""The chat template stored in a model's tokenizer: conversations written the way the model was trained.

A model trained on question/answer or prompt/completion rows saw each row as one turn: the prompt template
around the question (``Question: {prompt}\\nAnswer:``, or ``{prompt}`` alone), the answer after it (with one
space unless it starts with one) and end-of-text. gpt2tui's own chat writes a conversation that way
(``gpt2tui.core.generation.chat_prompt``); this Jinja template writes exactly the same text, so that
``tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)`` and other servers
(vLLM, TGI, the one issue 10 adds) prompt a pushed model the way it learned. It is saved in
``tokenizer_config.json`` (not only in transformers' newer ``chat_template.jinja``), where every reader looks.

Decisions:
- **System messages are left out.** The model never saw one in training, and written as plain text a system
  prompt would read as part of the first question; clients that always send one (Open WebUI) still work.
- **Other roles (tool, function) are refused** with ``raise_exception``: there is no way to write them.
- **Plain-text models get no template** (an inherited one is removed): there are no turns to imitate, so a
  chat request is refused (issue 10's server answers 400 and points to completions) rather than guessed.
- The end-of-text token is written literally (the tokenizer's at save time), so the template needs no
  ``eos_token`` variable from whatever renders it.
- Trimming to the context is the caller's business (gpt2tui's chat drops the oldest turns first).
"""

from __future__ import annotations

import json
from typing import Any

PAIR_KINDS = ("qa", "prompt-completion")
"""Formatting kinds whose rows are turns, and so get a chat template."""


def _literal(text: str) -> str:
    """``text`` as a Jinja expression: Jinja reads a string literal's backslash escapes as Python does, and
    JSON writes the control characters and quotes that way (other characters stay as they are)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def chat_template(kind: str | None, prompt_template: str | None, eos: str) -> str | None:
    """The Jinja chat template for a model trained on rows of ``kind`` with ``prompt_template``; None for
    plain text (or a template this version cannot split around ``{prompt}``)."""
    if kind not in PAIR_KINDS:
        return None
    template = prompt_template or "{prompt}"
    if template.count("{prompt}") != 1:
        return None
    before, after = template.split("{prompt}")
    # The user's turn is the template up to the prompt's end; the assistant's turn (and the generation
    # prompt) starts with the rest, so a conversation ending with a user message plus the generation prompt
    # is the template filled with that message, as chat_prompt writes it.
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        f"{_literal(before)}{{{{ message['content'] }}}}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{_literal(after)}"
        "{%- if message['content'][:1] != ' ' -%}{{ ' ' }}{%- endif -%}"
        f"{{{{ message['content'] }}}}{_literal(eos)}"
        "{%- elif message['role'] != 'system' -%}"
        "{{ raise_exception('This model was trained on prompts and replies only; its chat template "
        "cannot write a ' + message['role'] + ' message.') }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{_literal(after)}{{%- endif -%}}"
    )


def set_chat_template(tokenizer: Any, kind: str | None, prompt_template: str | None) -> str | None:
    """Give ``tokenizer`` the chat template of its training rows (or none, for plain text); returns it.

    Save it with ``save_pretrained(..., save_jinja_files=False)`` so ``tokenizer_config.json`` carries it.
    """
    tokenizer.chat_template = chat_template(kind, prompt_template, tokenizer.eos_token or "")
    return tokenizer.chat_template
