"""Which server process drives an execution, when several share one data directory.

`treadle dev --processes N` runs N processes over one set of SQLite files. Every
process serves the API; each execution belongs to one of them, by its id:
`crc32(exec_id) % N`. The owner fires the execution's timers (its invocations, waits,
retries), so no two processes run the same invocation, and a restarted process
recovers only the leases of its own executions (the others' are alive).

A process starts its executions with ids it owns (`owned_id`), so an execution
started by a process stays in it: its invocations, its synchronous caller and its
timers meet in one process. Ids not chosen that way (a child execution's, derived from
its parent) belong to whoever the hash says. The partition is a pure function of the
id and N, so it holds across restarts; a restart with another N moves executions, which
is safe because the new processes recover every lease of their new shares.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass


def exec_id_of(arn: str) -> str:
    """An execution ARN ends with `/durable-execution/<name>/<exec_id>`."""
    return arn.rsplit("/", 1)[-1]


def owner(arn: str, count: int) -> int:
    """The index (0..count-1) of the process that owns the execution `arn`."""
    if count <= 1:
        return 0
    return zlib.crc32(exec_id_of(arn).encode()) % count


@dataclass(frozen=True)
class Partition:
    """This process's place among the processes of one data directory."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"process index {self.index} is outside 0..{self.count - 1}")

    @property
    def primary(self) -> bool:
        """The process that also runs the singletons (relay, promoter, schedules, gc)."""
        return self.index == 0

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, arn: str) -> bool:
        return self.count == 1 or owner(arn, self.count) == self.index

    def owned_id(self, new_id: Callable[[], str]) -> str:
        """A fresh id from `new_id` that this process owns (count tries on average)."""
        while True:
            candidate = new_id()
            if self.count == 1 or zlib.crc32(candidate.encode()) % self.count == self.index:
                return candidate
