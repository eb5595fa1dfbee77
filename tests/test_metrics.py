"""Generation metrics against values worked out by hand on fixed token sequences (the arithmetic is in each
test's comments, so a reader can check the expected number without running anything)."""

from __future__ import annotations

import math

import pytest

from gpt2tui.core.metrics import (
    GenerationMetrics,
    ScoredReply,
    answer_tokens,
    distinct_n,
    generation_metrics,
    mean_length,
    mean_token_logprob,
    ngrams,
    perplexity_from_logprob,
    repeated_ngram_rate,
    rouge_l,
    token_f1,
)


def test_ngrams_are_contiguous_and_none_for_short_sequences() -> None:
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]
    assert ngrams([1, 2, 3], 3) == [(1, 2, 3)]
    assert ngrams([1, 2], 3) == []
    with pytest.raises(ValueError):
        ngrams([1], 0)


def test_distinct_n_pools_unique_ngrams_over_all_replies() -> None:
    replies = [[1, 2, 3, 1, 2], [1, 2, 2]]
    # unigrams: 5 + 3 = 8 in all, unique {1, 2, 3} = 3  ->  3/8
    assert distinct_n(replies, 1) == pytest.approx(3 / 8)
    # bigrams: (1,2) (2,3) (3,1) (1,2) | (1,2) (2,2): 6 in all, unique {(1,2), (2,3), (3,1), (2,2)} = 4  ->  4/6
    assert distinct_n(replies, 2) == pytest.approx(4 / 6)
    # the same reply twice halves distinct-1 (an n-gram counts once however many replies use it)
    assert distinct_n([[5, 6], [5, 6]], 1) == pytest.approx(2 / 4)


def test_distinct_n_is_unknown_without_ngrams() -> None:
    assert distinct_n([], 1) is None
    assert distinct_n([[7]], 2) is None  # one token has no bigram
    assert distinct_n([[], [7]], 1) == 1.0


def test_repeated_4gram_rate_counts_repeats_within_a_reply_only() -> None:
    loop = [7, 8, 9, 7, 8, 9, 7, 8]
    # 4-grams of the loop: (7,8,9,7) (8,9,7,8) (9,7,8,9) (7,8,9,7) (8,9,7,8): 5, of which 2 repeat earlier ones
    assert repeated_ngram_rate([loop]) == pytest.approx(2 / 5)
    # [1,2,3] has no 4-gram; [1,2,3,4] twice: one 4-gram each, repeated across replies only: not counted
    # pooled: (2 + 0 + 0 + 0) / (5 + 0 + 1 + 1) = 2/7
    assert repeated_ngram_rate([loop, [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]]) == pytest.approx(2 / 7)
    assert repeated_ngram_rate([[1, 2, 3, 4, 5]]) == 0.0
    assert repeated_ngram_rate([[1, 1, 1, 1, 1, 1]]) == pytest.approx(2 / 3)  # 3 four-grams, all the same
    assert repeated_ngram_rate([[1, 2, 3]]) is None


def test_mean_length_counts_empty_replies() -> None:
    assert mean_length([[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3], [1, 2, 3, 4], []]) == pytest.approx(15 / 4)
    assert mean_length([]) is None


def test_mean_token_logprob_is_token_weighted_and_its_perplexity_is_exp_of_minus_it() -> None:
    # tokens: -1, -2 | -3: (-1 - 2 - 3) / 3 = -2.0 (a mean of reply means would give (-1.5 - 3) / 2 = -2.25)
    mean = mean_token_logprob([[-1.0, -2.0], [-3.0]])
    assert mean == pytest.approx(-2.0)
    assert perplexity_from_logprob(mean) == pytest.approx(math.e**2)  # 7.389...
    assert perplexity_from_logprob(0.0) == 1.0  # a model sure of every token
    assert perplexity_from_logprob(-1e6) == math.inf  # no overflow error
    assert mean_token_logprob([[], []]) is None and perplexity_from_logprob(None) is None


@pytest.mark.parametrize("bad", [[[0.5]], [[-1.0, math.nan]]])
def test_mean_token_logprob_refuses_values_that_are_no_log_probabilities(bad: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="log-probabilities must be at most 0"):
        mean_token_logprob(bad)


def test_token_f1_follows_squad() -> None:
    # normalised: reply [cat, sat, on, mat], reference [cat, sat, on, red, mat]: 4 shared
    # precision 4/4, recall 4/5, F1 = 2 * 1 * 0.8 / 1.8 = 8/9
    assert answer_tokens("The cat sat on the mat.") == ["cat", "sat", "on", "mat"]
    assert token_f1("The cat sat on the mat.", "A cat sat on a red mat") == pytest.approx(8 / 9)
    # a word counts at most as often as both use it: [mars x3] vs [mars, is, red]: 1 shared, P = R = 1/3
    assert token_f1("Mars Mars Mars", "Mars is red") == pytest.approx(1 / 3)
    assert token_f1("Jupiter", "jupiter!") == 1.0
    assert token_f1("Saturn", "Jupiter") == 0.0
    assert token_f1("", "") == 1.0  # two empty answers agree
    assert token_f1("the", "Jupiter") == 0.0  # only an article: empty after normalising


def test_rouge_l_is_the_longest_common_subsequence_f1() -> None:
    # [the, cat, lay, on, a, mat] vs [the, cat, sat, on, the, mat]: LCS the-cat-on-mat = 4, P = R = 4/6
    assert rouge_l("the cat lay on a mat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # order matters (a subsequence, not a bag): [mat, on, cat] vs [cat, on, mat]: LCS 1, P = R = 1/3
    assert rouge_l("mat on cat", "cat on mat") == pytest.approx(1 / 3)
    # [the, largest, planet, is, jupiter] vs [jupiter]: LCS 1, P = 1/5, R = 1, F = 2 * 0.2 / 1.2 = 1/3
    assert rouge_l("The largest planet is Jupiter.", "Jupiter") == pytest.approx(1 / 3)
    assert rouge_l("", "Jupiter") == 0.0


def test_generation_metrics_puts_every_figure_together() -> None:
    replies = [
        ScoredReply(
            tokens=[1, 2, 3, 1], logprobs=[-1.0, -1.0, -2.0, -2.0], text="the cat sat", reference="cat sat"
        ),
        ScoredReply(tokens=[2, 2], logprobs=[-0.5, -0.5], text="mars", reference="jupiter"),
        ScoredReply(tokens=[4], logprobs=[-1.0], text="free text"),  # plain text: no reference
    ]
    metrics = generation_metrics(replies)
    assert metrics == GenerationMetrics(
        replies=3,
        distinct_1=pytest.approx(4 / 7),  # unigrams 1 2 3 1 | 2 2 | 4: 7, unique {1, 2, 3, 4}
        distinct_2=pytest.approx(4 / 4),  # (1,2) (2,3) (3,1) | (2,2): all unique
        repeated_4gram_rate=0.0,  # one 4-gram in all, no repeat
        mean_reply_tokens=pytest.approx(7 / 3),
        mean_token_logprob=pytest.approx(-8 / 7),  # (-1 -1 -2 -2 -0.5 -0.5 -1) / 7
        reply_perplexity=pytest.approx(math.exp(8 / 7)),
        # "the cat sat" vs "cat sat": ROUGE-L LCS 2, P 2/3, R 1, F 0.8; SQuAD F1 the same (article dropped: 1.0)
        # "mars" vs "jupiter": 0 and 0; means over the two judged replies: (0.8 + 0) / 2, (1.0 + 0) / 2
        rouge_l=pytest.approx(0.4),
        token_f1=pytest.approx(0.5),
        references=2,
    )
    assert set(metrics.to_dict()) == {f for f in GenerationMetrics.__dataclass_fields__}


def test_generation_metrics_of_nothing_are_unknown_not_zero() -> None:
    metrics = generation_metrics([])
    assert metrics.replies == 0 and metrics.references == 0
    assert all(
        value is None for key, value in metrics.to_dict().items() if key not in ("replies", "references")
    )


def test_a_reply_needs_one_logprob_per_token() -> None:
    with pytest.raises(ValueError, match="2 tokens but 1 log-probabilities"):
        ScoredReply(tokens=[1, 2], logprobs=[-1.0], text="x")


def test_the_stored_record_has_a_field_for_every_generation_figure() -> None:
    from gpt2tui.core.card import EvaluationRecord

    assert set(GenerationMetrics.__dataclass_fields__) <= set(EvaluationRecord.__dataclass_fields__)
