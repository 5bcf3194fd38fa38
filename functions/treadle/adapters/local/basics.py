"""Clock and id adapters (the same in embedded and AWS mode)."""

from __future__ import annotations

import secrets
import time
import uuid

from treadle.domain.partition import Partition


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class RandomIds:
    def __init__(self, partition: Partition | None = None) -> None:
        # Several processes on one data directory: this one starts executions it owns.
        self._partition = partition or Partition()

    def execution_id(self) -> str:
        return self._partition.owned_id(lambda: str(uuid.uuid4()))

    def request_id(self) -> str:
        return str(uuid.uuid4())

    def callback_id(self) -> str:
        # Unguessable (192 bits) and made of characters the API's pattern allows
        # unescaped in a URL path segment.
        return secrets.token_hex(24)

    def revision_id(self) -> str:
        return str(uuid.uuid4())
