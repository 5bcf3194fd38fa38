"""Execution ids: RFC 9562 version 7 UUIDs, ordered by the time they were made."""

from __future__ import annotations

import uuid

from treadle.adapters.local.basics import RandomIds, uuid7


def test_an_execution_id_is_a_version_7_uuid_that_carries_its_millisecond() -> None:
    made = uuid.UUID(uuid7(1_765_000_000_123))
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == 1_765_000_000_123


def test_ids_made_later_sort_after_earlier_ones_whatever_their_random_bits() -> None:
    earlier = [uuid7(1_000) for _ in range(50)]
    later = [uuid7(1_001) for _ in range(50)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 100  # 74 random bits: no collision in one ms


def test_a_platform_s_execution_ids_follow_the_clock() -> None:
    ids = RandomIds()
    made = [ids.execution_id() for _ in range(20)]
    stamps = [uuid.UUID(i).int >> 80 for i in made]
    assert stamps == sorted(stamps)
    assert all(uuid.UUID(i).version == 7 for i in made)
