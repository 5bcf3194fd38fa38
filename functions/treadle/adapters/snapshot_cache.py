"""The snapshot cache of both ExecutionStore adapters (SQLite and DynamoDB).

A checkpoint loads its execution, changes it and commits; re-reading and re-parsing
every operation each time would dominate its cost. So each store keeps the snapshots
of recently used executions and advances them with its own commits. Entries are
`Snapshot`s (or subclasses carrying what a store needs more), each at the version of
its execution (`version_seq`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from treadle.domain.models import TERMINAL_EXECUTION_STATUSES
from treadle.domain.ports import Commit, Snapshot, StoredOperation

S = TypeVar("S", bound=Snapshot)


class SnapshotCache(Generic[S]):
    """Snapshots by execution ARN, the least recently used evicted first; thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, S] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, arn: str) -> S | None:
        with self._lock:
            entry = self._entries.get(arn)
            if entry is not None:
                self._entries.move_to_end(arn)
            return entry

    def remember(self, entry: S) -> None:
        """Cache `entry`, unless a newer version of its execution is cached already.

        Another thread may have cached a later commit meanwhile (e.g. the first
        invocation, while `create` returns): the newest wins.
        """
        arn = entry.execution.arn
        with self._lock:
            current = self._entries.get(arn)
            if current is None or current.execution.version_seq <= entry.execution.version_seq:
                self._entries[arn] = entry
            self._entries.move_to_end(arn)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, arn: str) -> None:
        with self._lock:
            self._entries.pop(arn, None)

    def advance(self, commit: Commit, build: Callable[[dict[str, StoredOperation]], S]) -> None:
        """After `commit` applied (its execution now at the new version).

        The entry at the version the commit was computed from becomes `build(operations)`
        with the commit's operations folded in; an entry at any other version is stale
        and dropped, so the next load reads the store. A closed execution leaves the
        cache: nothing checkpoints it again, and keeping the last few thousand closed
        ones cost the soak ~16 MiB of memory that looked like a leak until it was full.
        """
        arn = commit.execution.arn
        if commit.execution.status in TERMINAL_EXECUTION_STATUSES:
            self.forget(arn)
            return
        cached = self.get(arn)
        if cached is None or cached.execution.version_seq != commit.execution.version_seq - 1:
            self.forget(arn)
            return
        operations = dict(cached.operations)
        for stored in commit.operations:
            operations[stored.op.Id] = stored
        self.remember(build(operations))
