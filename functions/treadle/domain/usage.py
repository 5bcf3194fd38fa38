"""A tenant's usage as the stores count it (`GET /v1/tenants/{id}/usage`).

Every figure is a counter the stores move in the transaction of the change it counts, so
reading usage costs a fixed number of rows or items however many executions exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MINUTE_MS = 60_000
# A last-used time is at most this stale: a use within it of the recorded one writes
# nothing (`LastUsedStore.touch`).
LAST_USED_GRAIN_MS = MINUTE_MS
# Resource kinds of the inventory and of last-used records.
FUNCTION_VERSION = "functionVersion"
REPOSITORY = "repository"
FACET = "facet"
EXECUTION = "execution"
KINDS = (FUNCTION_VERSION, REPOSITORY, FACET, EXECUTION)


@dataclass(frozen=True)
class ExecutionCounts:
    """Executions by stored status, those holding an invocation now, and the per-minute
    start buckets (minute number since the epoch -> starts) of the current and previous
    minute."""

    by_status: Mapping[str, int] = field(default_factory=dict)
    in_flight: int = 0
    starts_by_minute: Mapping[int, int] = field(default_factory=dict)

    def status(self, name: str) -> int:
        # Never negative, even if an operator edited a counter.
        return max(0, self.by_status.get(name, 0))

    @property
    def running(self) -> int:
        """RUNNING executions holding an invocation now."""
        return min(max(0, self.in_flight), self.status("RUNNING"))

    @property
    def waiting(self) -> int:
        """RUNNING executions parked on a wait, a callback or a retry timer."""
        return self.status("RUNNING") - self.running

    def starts_last_minute(self, now_ms: int) -> int:
        """Starts in the 60 s before `now_ms`, estimated from two minute buckets: the
        current one, plus the previous one weighted by how much of it the window still
        covers (the sliding-window estimate rate limiters use; exact at a minute's start).
        """
        minute, into = divmod(now_ms, MINUTE_MS)
        current = max(0, self.starts_by_minute.get(minute, 0))
        previous = max(0, self.starts_by_minute.get(minute - 1, 0))
        return current + (previous * (MINUTE_MS - into)) // MINUTE_MS


@dataclass(frozen=True)
class FunctionCounts:
    functions: int = 0
    versions: int = 0  # published, not counting $LATEST
    code_bytes: int = 0  # of $LATEST and every published version


def minute_of(ms: int) -> int:
    return ms // MINUTE_MS
