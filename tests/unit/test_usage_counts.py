"""Starts in the last minute: the sliding-window estimate over two minute buckets."""

from __future__ import annotations

from treadle.domain.usage import MINUTE_MS, ExecutionCounts


def _counts(starts: dict[int, int]) -> ExecutionCounts:
    return ExecutionCounts({}, 0, starts)


def test_starts_of_the_current_minute_count_whole() -> None:
    assert _counts({10: 3}).starts_last_minute(10 * MINUTE_MS + 59_000) == 3


def test_the_previous_minute_counts_by_the_share_the_window_still_covers() -> None:
    counts = _counts({9: 4, 10: 1})
    assert counts.starts_last_minute(10 * MINUTE_MS) == 5  # at the minute's turn: all of it
    assert counts.starts_last_minute(10 * MINUTE_MS + MINUTE_MS // 2) == 3  # half of 4
    assert counts.starts_last_minute(10 * MINUTE_MS + 59_999) == 1  # almost none


def test_older_minutes_do_not_count() -> None:
    assert _counts({8: 7}).starts_last_minute(10 * MINUTE_MS) == 0
