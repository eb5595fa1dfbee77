"""Generation metrics: diversity, coherence and relevance of a set of replies, as pure functions.

Every figure here is defined on plain sequences so it can be checked by hand: a "token" is whatever unit the
caller passes (the evaluation passes the model's own token ids, so figures are comparable between models only
when they share a tokenizer). Undefined figures (no replies, no n-grams, no references) are ``None``, never a
made-up 0, so a table shows "unknown" rather than a misleading score.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REPEAT_N = 4
"""The n of the repeated n-gram rate: 4-grams, as in Welleck et al. (2019)'s seq-rep-4."""


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    """The ``len(tokens) - n + 1`` contiguous n-grams of one sequence (none when it is shorter than ``n``)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(replies: Sequence[Sequence[Hashable]], n: int) -> float | None:
    """Distinct-n (Li et al., 2016): unique n-grams / total n-grams, pooled over all replies.

    An n-gram counts once in the numerator however many replies use it, so a model that answers every prompt
    alike scores low even when each reply is varied. ``None`` when no reply has ``n`` tokens.
    """
    grams = [gram for reply in replies for gram in ngrams(reply, n)]
    return len(set(grams)) / len(grams) if grams else None


def repeated_ngram_rate(replies: Sequence[Sequence[Hashable]], n: int = REPEAT_N) -> float | None:
    """The share of n-gram occurrences that repeat an earlier n-gram of the same reply, pooled over replies.

    ``sum(total_r - unique_r) / sum(total_r)`` over replies ``r``: 0 for a reply that never loops, near 1 for
    one stuck in a loop. Repeats across different replies do not count (that is what distinct-n measures).
    ``None`` when no reply has ``n`` tokens.
    """
    total = repeated = 0
    for reply in replies:
        grams = ngrams(reply, n)
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return repeated / total if total else None


def mean_length(replies: Sequence[Sequence[Hashable]]) -> float | None:
    """Mean number of tokens per reply, empty replies included (they are a finding); ``None`` for no reply."""
    return sum(len(reply) for reply in replies) / len(replies) if replies else None


def mean_token_logprob(logprobs: Sequence[Sequence[float]]) -> float | None:
    """Coherence: the mean natural-log probability per generated token, pooled over all replies.

    Token-weighted (a long reply weighs more than a short one), so it matches the perplexity below. The
    log-probabilities must come from the model's own distribution (raw logits), not the one temperature or
    top-k/top-p reshaped for sampling, or the figure would measure the decoding settings. ``None`` when there
    is no token.
    """
    values = [value for reply in logprobs for value in reply]
    if any(value > 0 or math.isnan(value) for value in values):
        raise ValueError("log-probabilities must be at most 0")
    return math.fsum(values) / len(values) if values else None


def perplexity_from_logprob(mean_logprob: float | None) -> float | None:
    """``exp(-mean log-probability)``: the perplexity of the replies under the model; inf rather than an
    overflow for a model that found its own text impossible."""
    if mean_logprob is None:
        return None
    try:
        return math.exp(-mean_logprob)
    except OverflowError:
        return math.inf


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def answer_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles (a, an, the), split on space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(reply: str, reference: str) -> float:
    """Relevance as SQuAD's token F1: the harmonic mean of the precision and recall of the reply's
    normalised words against the reference's, counting each shared word at most as often as both use it.

    Two empty answers agree (1.0); one empty answer against a non-empty one scores 0.0 (as SQuAD v2 does).
    """
    predicted, gold = answer_tokens(reply), answer_tokens(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    shared = sum((Counter(predicted) & Counter(gold)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_l(reply: str, reference: str) -> float:
    """Relevance as ROUGE-L F1 (Lin, 2004) from ``rouge-score``: the longest common subsequence of words.

    rouge-score's own tokenizer (lower case, runs of a-z and 0-9, no stemming), so the figure is the one other
    tools report; letters outside a-z are dropped, so text in a non-Latin script scores 0.
    """
    return _rouge_scorer().score(reference, reply)["rougeL"].fmeasure


_scorers: dict[str, Any] = {}


def _rouge_scorer() -> Any:
    """One scorer per process (building it imports nltk, about half a second)."""
    if "rougeL" not in _scorers:
        from rouge_score import rouge_scorer

        _scorers["rougeL"] = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _scorers["rougeL"]


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True)
class ScoredReply:
    """One generated reply: its token ids with their log-probabilities, its text, and the reference answer
    (the held-out answer or continuation) when the data has one."""

    tokens: Sequence[int]
    logprobs: Sequence[float]
    text: str
    reference: str | None = None

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.logprobs):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.logprobs)} log-probabilities")


@dataclass(frozen=True)
class GenerationMetrics:
    """Every generation figure of one evaluation; the field names are the ones stored with the model."""

    replies: int
    distinct_1: float | None
    distinct_2: float | None
    repeated_4gram_rate: float | None
    mean_reply_tokens: float | None
    mean_token_logprob: float | None
    reply_perplexity: float | None
    rouge_l: float | None  # mean over the replies that have a reference
    token_f1: float | None  # mean over the replies that have a reference
    references: int = field(default=0)  # how many replies had a reference (the relevance sample size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generation_metrics(replies: Sequence[ScoredReply]) -> GenerationMetrics:
    """Diversity, coherence and relevance of ``replies``, each defined by the function above of its name."""
    tokens = [reply.tokens for reply in replies]
    mean_logprob = mean_token_logprob([reply.logprobs for reply in replies])
    judged = [reply for reply in replies if reply.reference is not None]
    return GenerationMetrics(
        replies=len(replies),
        distinct_1=distinct_n(tokens, 1),
        distinct_2=distinct_n(tokens, 2),
        repeated_4gram_rate=repeated_ngram_rate(tokens, REPEAT_N),
        mean_reply_tokens=mean_length(tokens),
        mean_token_logprob=mean_logprob,
        reply_perplexity=perplexity_from_logprob(mean_logprob),
        rouge_l=_mean([rouge_l(r.text, r.reference or "") for r in judged]),
        token_f1=_mean([token_f1(r.text, r.reference or "") for r in judged]),
        references=len(judged),
    )
