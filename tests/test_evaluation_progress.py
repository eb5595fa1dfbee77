"""Evaluation reports its progress per batch and its own loop speed."""

from __future__ import annotations

from gpt2tui.core.data import DataSpec
from gpt2tui.core.evaluation import evaluate_file
from tests.conftest import KJV_TXT


def test_progress_reaches_every_block_and_speed_is_reported(tiny_model: str) -> None:
    calls: list[tuple[int, int]] = []
    result = evaluate_file(
        tiny_model, DataSpec(str(KJV_TXT)), batch_size=4, on_progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (result.blocks, result.blocks)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) == -(-result.blocks // 4)
    assert result.seconds > 0 and result.to_dict()["tokens_per_second"] == result.tokens / result.seconds
