"""The port of queued starts (issue 14, point 5): where the promoter finds them.

The queue is no separate record: a QUEUED execution is its own entry, so accepting a
start and queueing it is the one write that creates the execution, and a promotion is
the one conditional write that moves it to RUNNING (`engine/queue.py`).
"""

from __future__ import annotations

from typing import Protocol


class StartQueue(Protocol):
    def tenants_with_queued(self) -> list[str]:
        """Tenants with at least one QUEUED execution (a few rows, never a scan of them)."""

    def count_queued(self, tenant: str) -> int:
        """The tenant's QUEUED executions (for its maxQueued quota)."""

    def oldest_queued(self, tenant: str, limit: int) -> list[str]:
        """ARNs of the tenant's first `limit` QUEUED executions, oldest start first."""
