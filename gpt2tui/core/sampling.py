"""Token choice with a random generator of the stream's own, and each chosen token's log-probability.

``model.generate`` samples with torch's process-wide generator, so two replies generated at the same time (two
chat panes, a server's concurrent requests) draw from one shared stream and neither is reproducible. Here the
choice is made inside a logits processor: it warps the scores exactly as ``generate``'s sampling would
(temperature, then top-k, then top-p, keeping at least one token), draws with its own ``torch.Generator``, and
leaves only the chosen token finite, so ``generate`` itself runs greedy search and picks it. The same processor
records the chosen token's log-probability under the distribution it was drawn from (for greedy, the model's
own after ``generate``'s processors such as the repetition penalty) and, apart, under the model's own
distribution before temperature, top-k and top-p (what coherence is measured on), both from the scores this
generation computed, never from a second forward pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    """How one stream picks tokens: greedy (``sample`` False) or sampling with these warps."""

    sample: bool
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut
    seed: int = 0


class TokenChooser:
    """A ``LogitsProcessor`` for one sequence (batch size 1) that chooses the next token and records it.

    ``records`` grows by ``(token id, log-probability)`` per generated token, in order, so a consumer that has
    seen N tokens of the stream can pair them with ``records[:N]``; ``model_logprobs`` grows alongside with each
    token's log-probability under the model's distribution before the warps (the same as drawn for greedy)."""

    def __init__(self, choice: Choice, device: Any = "cpu") -> None:
        import torch

        self.choice = choice
        self.generator = torch.Generator(device=device).manual_seed(choice.seed)
        self.records: list[tuple[int, float]] = []
        self.model_logprobs: list[float] = []
        self.lock = threading.Lock()

    def warp(self, scores: Any) -> Any:
        """Temperature, top-k, top-p, in ``generate``'s order and with its tie and boundary rules."""
        import torch

        c = self.choice
        scores = scores / c.temperature if c.temperature != 1.0 else scores
        if c.top_k > 0:
            k = min(c.top_k, scores.shape[-1])
            kth = torch.topk(scores, k).values[..., -1, None]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if c.top_p < 1.0:
            ordered, index = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative <= (1 - c.top_p)
            drop[..., -1:] = False  # always keep the most likely token
            scores = scores.masked_fill(drop.scatter(-1, index, drop), float("-inf"))
        return scores

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = model_scores = scores.float()
        if not self.choice.sample:
            # Greedy: ``generate``'s own argmax over these same scores picks the same token, so they go back
            # unchanged (no vocabulary-sized mask to write: 80 instead of 104 us a token at GPT-2's vocabulary).
            chosen = scores.argmax(dim=-1, keepdim=True)
            logprob = float(torch.log_softmax(scores, dim=-1).gather(-1, chosen)[0, 0])
            self._record(int(chosen[0, 0]), logprob, logprob)  # drawn from the model's own distribution
            return scores
        scores = self.warp(scores)
        chosen = torch.multinomial(scores.softmax(dim=-1), 1, generator=self.generator)
        logprob = torch.log_softmax(scores, dim=-1).gather(-1, chosen)
        model_logprob = (
            logprob if scores is model_scores else torch.log_softmax(model_scores, dim=-1).gather(-1, chosen)
        )
        self._record(int(chosen[0, 0]), float(logprob[0, 0]), float(model_logprob[0, 0]))
        only = torch.full_like(scores, float("-inf"))
        return only.scatter(-1, chosen, 0.0)

    def _record(self, token: int, logprob: float, model_logprob: float) -> None:
        with self.lock:
            self.records.append((token, logprob))
            self.model_logprobs.append(model_logprob)

    def snapshot(self, count: int | None = None) -> list[tuple[int, float]]:
        """The first ``count`` records (all when None), safe to call from another thread."""
        with self.lock:
            return list(self.records if count is None else self.records[:count])

    def span(self, start: int, stop: int) -> list[tuple[int, float, float]]:
        """``(token id, log-probability, model log-probability)`` of tokens ``start`` to ``stop`` (fewer when
        not all were recorded yet), safe to call from another thread; costs only the tokens asked for."""
        with self.lock:
            return [
                (token, logprob, model)
                for (token, logprob), model in zip(
                    self.records[start:stop], self.model_logprobs[start:stop], strict=True
                )
            ]

    def model_snapshot(self, count: int | None = None) -> list[float]:
        """The first ``count`` log-probabilities under the model's own distribution (all when None)."""
        with self.lock:
            return list(self.model_logprobs if count is None else self.model_logprobs[:count])
