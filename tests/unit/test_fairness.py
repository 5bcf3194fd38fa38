"""Fairness proof (issue 14, point 5): tenant B's start never reads tenant A's queue.

Structural, not timed: with A holding 10,000 queued starts, B's start path calls the
start queue only about B, and executes as many SQLite VM instructions as with no backlog
at all (a read past A's rows would cost at least one instruction per row). The timed
figures are `benchmarks/fairness.py`'s; it runs here at a tiny size so it cannot rot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import fairness
from benchmarks.fairness import World, backlogged

from treadle.adapters.sqlite.start_queue import SqliteStartQueue
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import FunctionVersion

BACKLOG = 10_000


class RecordingQueue:
    """The real start queue, recording which tenant each call is about."""

    def __init__(self, inner: SqliteStartQueue) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str | None]] = []

    def tenants_with_queued(self) -> list[str]:
        self.calls.append(("tenants_with_queued", None))
        return self.inner.tenants_with_queued()

    def count_queued(self, tenant: str) -> int:
        self.calls.append(("count_queued", tenant))
        return self.inner.count_queued(tenant)

    def oldest_queued(self, tenant: str, limit: int) -> list[str]:
        self.calls.append(("oldest_queued", tenant))
        return self.inner.oldest_queued(tenant, limit)


@contextmanager
def vm_steps(world: World) -> Iterator[list[int]]:
    """Counts the SQLite VM instructions this thread's reads and the writer execute."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    with world.db.read() as reader, world.db.file.locked() as writer:
        conns: list[sqlite3.Connection] = [reader, writer]
    for conn in conns:
        conn.set_progress_handler(count, 1)
    try:
        yield steps
    finally:
        for conn in conns:
            conn.set_progress_handler(None, 1)


def _first_start(world: World, fn: FunctionVersion) -> int:
    with vm_steps(world) as steps:
        ex = world.start(fn, "first")
    assert ex.status is ExecutionStatus.RUNNING
    return steps[0]


def test_a_tenants_first_start_never_reads_another_tenants_queue(tmp_path: Path) -> None:
    world = World.open(tmp_path, wrap=RecordingQueue)
    try:
        queue = world.queue
        assert isinstance(queue, RecordingQueue)
        # The same start path, measured for a tenant B before A has any backlog...
        a, _ = backlogged(world, 0)
        before = _first_start(world, world.tenant("b-before"))
        # ...and for another B once A holds 10,000 queued starts.
        fairness.fill_queue(world.db, a.tenant, BACKLOG)
        assert queue.inner.count_queued(a.tenant) == BACKLOG
        b = world.tenant("b-after")
        queue.calls.clear()
        after = _first_start(world, b)
        assert queue.calls == [("count_queued", b.tenant)]
        # Not one instruction per A's row: the same work as without the backlog, give
        # or take a B-tree page split.
        assert after < before + 50, (before, after)
        assert queue.inner.count_queued(a.tenant) == BACKLOG  # and A's queue is as it was
    finally:
        world.close()


def test_the_fairness_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    empty = fairness.measure(tmp_path / "empty", backlog=0, starts=5)
    full = fairness.measure(tmp_path / "full", backlog=50, starts=5)
    assert (empty["backlog"], full["backlog"]) == (0, 50)
    for result in (empty, full):
        assert 0 < result["start_p50_ms"] <= result["start_p99_ms"]
