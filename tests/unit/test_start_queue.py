"""Queued starts on the embedded backend: admission (run now, queue, or 429 past
maxQueued), FIFO promotion as capacity frees, and round-robin between tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness
from support.fakes import ManualClock
from treadle.adapters.sqlite.start_queue import SqliteStartQueue
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.promoter import Promoter
from treadle.app.quotas import TenantQuotas
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import FunctionVersion, TimerKind
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.errors import RateExceeded
from treadle.tenancy.models import Quotas


class World:
    def __init__(self, tmp: Path) -> None:
        self.h = Harness(tmp)
        self.store = SqliteTenantStore(tmp / "tenants.sqlite")
        self.admin = TenantAdmin(self.store, ManualClock())
        self.queue = SqliteStartQueue(self.h.db)
        guard = QuotaGuard(monotonic=lambda: 0.0)  # a frozen bucket: tests spend it
        self.quotas = TenantQuotas(
            self.admin,
            executions=self.h.store,
            functions=self.h.functions,
            guard=guard,
            queue=self.queue,
        )
        self.promoted: list[str] = []
        self.promoter = Promoter(
            tenants=self.admin,
            executions=self.h.store,
            queue=self.queue,
            engine=self.h.engine,
            guard=guard,
        )
        promote = self.h.engine.promote

        def recorded(arn: str) -> bool:
            ok = promote(arn)
            if ok:
                self.promoted.append(arn)
            return ok

        self.h.engine.promote = recorded  # type: ignore[method-assign]

    def tenant(self, running: int, queued: int = 100, rate: float = 1000.0) -> FunctionVersion:
        quotas = Quotas(
            max_running_executions=running, max_queued=queued, max_starts_per_second=rate
        )
        tenant, _ = self.admin.create_tenant("t", quotas=quotas)
        fn = self.h.fn.model_copy(update={"tenant": tenant.account_id})
        self.h.functions.put_latest(fn, create=True)
        return fn

    def start(self, fn: FunctionVersion, name: str) -> tuple[str, ExecutionStatus]:
        limits, queued = self.quotas.admit_start(fn.tenant)
        ex, _ = self.h.engine.start(fn, name, None, limits=limits, queued=queued)
        return ex.arn, ex.status


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.store.close()


def test_starts_over_the_running_limit_queue_until_max_queued_then_429(w: World) -> None:
    fn = w.tenant(running=1, queued=2)
    assert w.start(fn, "a")[1] is ExecutionStatus.RUNNING
    assert w.start(fn, "b")[1] is ExecutionStatus.QUEUED
    assert w.start(fn, "c")[1] is ExecutionStatus.QUEUED
    with pytest.raises(RateExceeded, match="quota of 2 queued executions"):
        w.start(fn, "d")
    assert w.queue.count_queued(fn.tenant) == 2
    assert w.queue.tenants_with_queued() == [fn.tenant]


def test_starts_over_the_rate_queue_too(w: World) -> None:
    fn = w.tenant(running=100, rate=1.0)
    assert w.start(fn, "a")[1] is ExecutionStatus.RUNNING
    assert w.start(fn, "b")[1] is ExecutionStatus.QUEUED


def test_queued_starts_are_promoted_in_fifo_order_as_capacity_frees(w: World) -> None:
    fn = w.tenant(running=1)
    first, _ = w.start(fn, "first")
    queued = [w.start(fn, f"q{i}")[0] for i in range(3)]
    assert w.promoter.promote() == 0  # no capacity: nothing moves
    w.h.engine.stop(first, None)
    assert w.promoter.promote() == 1
    assert w.promoted == [queued[0]]
    assert w.h.store.get(queued[0]).status is ExecutionStatus.RUNNING
    assert [w.h.store.get(a).status for a in queued[1:]] == [ExecutionStatus.QUEUED] * 2
    # While the tenant has a backlog, a new start queues behind it even with capacity.
    w.h.engine.stop(queued[0], None)
    assert w.start(fn, "late")[1] is ExecutionStatus.QUEUED
    assert w.promoter.promote() == 1 and w.promoted[-1] == queued[1]


def test_a_stopped_queued_start_leaves_the_queue(w: World) -> None:
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "gone")
    w.h.engine.stop(arn, None)
    assert w.queue.count_queued(fn.tenant) == 0 and w.queue.oldest_queued(fn.tenant, 5) == []
    assert w.queue.tenants_with_queued() == []


def test_tenants_with_a_backlog_are_served_in_turn(w: World) -> None:
    big = w.tenant(running=0)
    small = w.tenant(running=0)
    bigs = [w.start(big, f"b{i}")[0] for i in range(20)]
    (lone, _) = w.start(small, "s0")
    # Capacity arrives for both at once: the small tenant's start is among the first
    # two promoted, not after the big tenant's twenty.
    for account in (big.tenant, small.tenant):
        w.admin.update_quotas(account, {"max_running_executions": 100})
    assert w.promoter.promote() == 21
    assert lone in w.promoted[:2]
    # Each tenant's own starts stayed in FIFO order.
    assert [a for a in w.promoted if a != lone] == bigs


def _parks_on_a_wait(env: dict[str, Any], h: Harness) -> dict[str, Any]:
    wait = {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 60}}
    h.checkpoint(env, [wait])
    return {"Status": "PENDING"}


def _succeeds(env: dict[str, Any], h: Harness) -> dict[str, Any]:
    return {"Status": "SUCCEEDED", "Result": '"done"'}


def test_a_start_that_parks_frees_its_slot_for_the_queue_and_says_so(w: World) -> None:
    fn = w.tenant(running=1)
    freed: list[str] = []
    w.h.engine.slot_listeners = (freed.append,)
    first, _ = w.start(fn, "first")
    queued, status = w.start(fn, "queued")
    assert status is ExecutionStatus.QUEUED
    assert w.promoter.promote() == 0  # the first awaits its invocation: it counts
    w.h.runtime.scripts.append(_parks_on_a_wait)
    w.h.pump()  # the first runs and parks on a one-minute wait
    assert w.h.store.get(first).status is ExecutionStatus.RUNNING
    assert freed == [first] and w.h.store.count_running(fn.tenant) == 0
    assert w.promoter.promote() == 1 and w.promoted == [queued]
    w.h.runtime.scripts.append(_parks_on_a_wait)
    w.h.pump()  # the promoted one runs and parks too
    assert w.h.store.count_running(fn.tenant) == 0
    assert w.start(fn, "third")[1] is ExecutionStatus.RUNNING  # room: runs at once
    # The waits elapse: each is due an invocation again and counts again (a resumed
    # execution is never held back, even over the limit), so a new start queues.
    w.h.clock.advance(61_000)
    for timer in w.h.store.due_timers(w.h.clock.now_ms(), 100):
        if timer.kind is TimerKind.WAIT:
            w.h.engine.fire(timer)
    assert w.h.store.count_running(fn.tenant) == 3
    assert w.start(fn, "late")[1] is ExecutionStatus.QUEUED


def test_a_batch_admits_each_entry_as_its_own_start_counting_the_ones_before_it(
    w: World,
) -> None:
    fn = w.tenant(running=2, queued=3)
    admissions = w.quotas.admit_starts(fn.tenant, 6)
    assert [a if isinstance(a, RateExceeded) else a[1] for a in admissions][:5] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert isinstance(admissions[5], RateExceeded) and "3 queued" in str(admissions[5])
    entries: list[tuple[str | None, str | None]] = [(f"b{i}", None) for i in range(5)]
    queued = [a[1] for a in admissions[:5] if not isinstance(a, RateExceeded)]
    started = w.h.engine.start_batch(fn, entries, None, queued)
    statuses = [r[0].status for r in started if isinstance(r, tuple)]
    assert statuses == [ExecutionStatus.RUNNING] * 2 + [ExecutionStatus.QUEUED] * 3
    assert w.h.store.count_running(fn.tenant) == 2 and w.queue.count_queued(fn.tenant) == 3
    # Queued behind a backlog: the next batch's entries queue too, FIFO, even with room.
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 100, "max_queued": 10})
    assert [a[1] for a in w.quotas.admit_starts(fn.tenant, 2) if isinstance(a, tuple)] == [
        True,
        True,
    ]
