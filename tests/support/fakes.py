"""Test doubles of ports that have no place in the runtime package."""

from __future__ import annotations

import threading

from treadle.domain.models import ExecutionLimits


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now += ms


class NoQuotas:
    """For tests that drive the use cases without tenants."""

    def check_start(self, tenant: str) -> ExecutionLimits | None:
        return None

    def admit_start(self, tenant: str) -> tuple[ExecutionLimits | None, bool]:
        return None, False

    def admit_starts(self, tenant: str, count: int) -> list[tuple[ExecutionLimits | None, bool]]:
        return [(None, False)] * count

    def check_code(self, tenant: str, adding_bytes: int, *, new_function: bool) -> None:
        return None
