"""Clock and id adapters (the same in embedded and AWS mode)."""

from __future__ import annotations

import secrets
import time
import uuid

from treadle.domain.partition import Partition


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def uuid7(now_ms: int) -> str:
    """A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    By hand because the standard library has it only from Python 3.14; the layout is
    the RFC's, so a reader of the id can tell the version and its start time.
    """
    value = (now_ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC 4122 variant
    return str(uuid.UUID(int=value))


class RandomIds:
    def __init__(self, partition: Partition | None = None) -> None:
        # Several processes on one data directory: this one starts executions it owns.
        self._partition = partition or Partition()

    def execution_id(self) -> str:
        # Time-ordered: an execution's ARN ends with its id and keys every row it has
        # (the execution, its operations, events and timers). Executions started in
        # the same moment then share B-tree pages, so a commit (and a group commit of
        # many executions) dirties a few pages at the index's edge instead of one
        # random page per index and execution: W2 wrote 304 KiB per execution to disk
        # with random ids, 188 KiB with these. Still 74 random bits: unguessable and
        # unique without coordination.
        return self._partition.owned_id(lambda: uuid7(time.time_ns() // 1_000_000))

    def request_id(self) -> str:
        return str(uuid.uuid4())

    def callback_id(self) -> str:
        # Unguessable (192 bits) and made of characters the API's pattern allows
        # unescaped in a URL path segment.
        return secrets.token_hex(24)

    def revision_id(self) -> str:
        return str(uuid.uuid4())
