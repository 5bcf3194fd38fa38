"""Several server processes on one data directory: who owns an execution, the ids a
process starts executions with, its scheduler's share, and the doorbells between them."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.local.doorbell import SCHEDULES, Doorbells
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.domain.partition import Partition, owner
from treadle.domain.ports import Timer, TimerKind
from treadle.tenancy.admin import QuotaGuard
from treadle.tenancy.errors import RateExceeded
from treadle.tenancy.models import Quotas, Tenant

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution"


def _arn(exec_id: str, name: str = "run") -> str:
    return f"{ARN}/{name}/{exec_id}"


def test_the_owner_is_the_execution_ids_alone_and_spreads_evenly() -> None:
    ids = [str(uuid.uuid4()) for _ in range(3000)]
    counts = Counter(owner(_arn(i), 3) for i in ids)
    assert set(counts) == {0, 1, 2}
    assert all(800 < n < 1200 for n in counts.values()), counts
    # The name does not matter, only the id: a named start keeps its owner.
    assert all(owner(_arn(i, "named"), 3) == owner(_arn(i), 3) for i in ids[:50])
    assert {owner(_arn(i), 1) for i in ids} == {0}


def test_a_process_starts_executions_it_owns() -> None:
    for index in range(3):
        ids = RandomIds(Partition(index, 3))
        made = [ids.execution_id() for _ in range(200)]
        assert {owner(_arn(i), 3) for i in made} == {index}
        assert len(set(made)) == 200
    assert len({RandomIds().execution_id() for _ in range(10)}) == 10


def test_a_partition_outside_its_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        Partition(2, 2)
    assert Partition().whole and Partition().primary and not Partition(1, 2).primary


class _NoRows:
    def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
        return []

    def next_due_ms(self) -> int | None:
        return None


def _owned(index: int, count: int) -> str:
    return _arn(Partition(index, count).owned_id(lambda: str(uuid.uuid4())))


def test_the_scheduler_hands_over_only_its_own_and_rings_the_owner_of_the_rest() -> None:
    rings: list[tuple[int, int]] = []
    part = Partition(0, 3)
    scheduler = TimerScheduler(
        _NoRows(),  # type: ignore[arg-type]
        SystemClock(),
        lambda timer: None,
        partition=part,
        ring=lambda index, due: rings.append((index, due)),
    )
    mine, theirs, far = _owned(0, 3), _owned(2, 3), _owned(1, 3)
    # A start hands its first invocation to a lane only for an execution of this process.
    assert scheduler.reserve(theirs) is None
    slot = scheduler.reserve(mine)
    assert slot is not None
    slot.release()
    now = SystemClock().now_ms()
    scheduler.dispatch(
        [
            Timer(theirs, TimerKind.INVOKE, "", now),
            Timer(theirs, TimerKind.WAIT, "w", now + 200),
            Timer(far, TimerKind.INVOKE, "", now + 3_600_000),  # its owner looks by then
            Timer(mine, TimerKind.INVOKE, "", now),
        ],
        now,
    )
    assert rings == [(2, now)]


def test_a_ring_wakes_the_process_it_is_for_with_the_due_time(tmp_path: Path) -> None:
    got: list[int] = []
    woke = threading.Event()

    def on_ring(due: int) -> None:
        got.append(due)
        woke.set()

    signals: list[int] = []
    signalled = threading.Event()

    def on_signal(code: int) -> None:
        signals.append(code)
        signalled.set()

    first = Doorbells(tmp_path / "run", 0, lambda due: None, on_signal)
    second = Doorbells(tmp_path / "run", 1, on_ring)
    first.start()
    second.start()
    try:
        first.ring(1, 1234)
        assert woke.wait(5)
        assert got == [1234]
        second.signal(0, SCHEDULES)  # a schedule changed in the second process
        assert signalled.wait(5)
        assert signals == [SCHEDULES]
        first.ring(7, 99)  # nobody there: dropped, not raised
    finally:
        first.stop()
        second.stop()
        second.stop()  # idempotent
    # A process that stopped is not rung; one never started stops cleanly too.
    Doorbells(tmp_path / "run", 0, lambda due: None).ring(1, 5)
    Doorbells(tmp_path / "run", 2, lambda due: None).stop()


def test_each_process_takes_its_share_of_a_tenants_start_rate() -> None:
    tenant = Tenant(
        account_id="123456789012",
        name="t",
        created_ms=0,
        quotas=Quotas(max_starts_per_second=10.0),
    )
    now = [0.0]
    guards = [QuotaGuard(lambda: now[0], processes=2) for _ in range(2)]
    taken = 0
    for guard in guards:
        while True:
            try:
                guard.check_starts(tenant)
            except RateExceeded as exc:
                assert "may start 10 executions per second" in exc.message
                break
            taken += 1
    assert taken == 10  # the tenant's rate, not twice it
