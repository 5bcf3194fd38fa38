"""The execution usage counters (`ExecutionStore.usage`) on both backends: the contract
suite of `test_execution_store`, its fixtures and builders reused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.contract import test_execution_store as base
from tests.contract.test_execution_store import (
    OTHER_TENANT,
    Backend,
    T,
    _change,
    _close,
    _start,
    _with_events,
)

from treadle.domain.errors import AlreadyExists, ConcurrentModification
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Commit, ExecutionStore
from treadle.domain.usage import ExecutionCounts

backend = base.backend  # the same fixtures: both backends
store = base.store

MINUTE = 60_000
NOW = 1_000 * MINUTE  # a minute boundary; starts below are placed around it


def _usage(store: ExecutionStore, tenant: str = T, now_ms: int = NOW) -> ExecutionCounts:
    return store.usage(tenant, now_ms)


def _statuses(counts: ExecutionCounts) -> dict[str, int]:
    return {s.value: counts.status(s.value) for s in ExecutionStatus if counts.status(s.value)}


def _invoking(active: bool) -> Callable[[Execution], Commit]:
    def edit(loaded: Execution) -> Commit:
        loaded.invocation_active = active
        return Commit(execution=loaded)

    return edit


def test_executions_are_counted_by_status_as_they_start_and_close(
    store: ExecutionStore,
) -> None:
    assert _statuses(_usage(store)) == {}
    runs = [_start(store, f"r{i}", start_ms=NOW - 5_000, invoke=True) for i in range(4)]
    assert _statuses(_usage(store)) == {"RUNNING": 4}
    _close(store, runs[0].arn, ExecutionStatus.SUCCEEDED)
    _close(store, runs[1].arn, ExecutionStatus.FAILED)
    _change(store, runs[2].arn, lambda ex: _with_events(ex, 2))  # no status change
    assert _statuses(_usage(store)) == {"RUNNING": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert store.count_running(T) == 2  # the quota's counter still agrees


def test_running_holds_an_invocation_and_waiting_is_parked(store: ExecutionStore) -> None:
    a, b = _start(store, "a", start_ms=NOW), _start(store, "b", start_ms=NOW)
    _change(store, a.arn, _invoking(True))
    usage = _usage(store)
    assert (usage.running, usage.waiting) == (1, 1)
    _change(store, b.arn, _invoking(True))
    assert (_usage(store).running, _usage(store).waiting) == (2, 0)
    _change(store, a.arn, _invoking(False))  # the invocation parked on a wait
    assert (_usage(store).running, _usage(store).waiting) == (1, 1)

    def close_invoking(loaded: Execution) -> Commit:
        loaded.status, loaded.invocation_active = ExecutionStatus.SUCCEEDED, False
        return Commit(execution=loaded)

    _change(store, b.arn, close_invoking)
    usage = _usage(store)
    assert (usage.running, usage.waiting, usage.status("SUCCEEDED")) == (0, 1, 1)


def test_a_replayed_or_raced_commit_moves_the_counters_once(backend: Backend) -> None:
    store, other = backend.store, backend.another()
    ex = _start(store, "raced", start_ms=NOW)
    mine, theirs = store.load(ex.arn).execution, other.load(ex.arn).execution
    mine.status, mine.invocation_active = ExecutionStatus.SUCCEEDED, True
    theirs.status = ExecutionStatus.FAILED
    store.commit(Commit(execution=mine))
    with pytest.raises(ConcurrentModification):
        other.commit(Commit(execution=theirs))
    replay = store.load(ex.arn).execution
    replay.version_seq -= 1  # the same change again, from the version it was made on
    replay.status = ExecutionStatus.SUCCEEDED
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=replay))
    with pytest.raises(AlreadyExists):
        _start(store, "raced", start_ms=NOW)  # a retried start
    usage = _usage(store)
    assert _statuses(usage) == {"SUCCEEDED": 1}
    assert usage.in_flight == 1
    assert usage.starts_last_minute(NOW) == 1


def test_deleting_uncounts_once_and_counters_never_go_negative(backend: Backend) -> None:
    store = backend.store
    ex = _start(store, "gone", start_ms=NOW)
    _change(store, ex.arn, _invoking(True))
    _close(store, ex.arn, ExecutionStatus.STOPPED)
    store.delete(ex.arn)
    store.delete(ex.arn)
    usage = _usage(store)
    assert _statuses(usage) == {}
    assert (usage.in_flight, usage.running, usage.waiting) == (0, 0, 0)


def test_starts_in_the_last_minute_come_from_two_minute_buckets(
    store: ExecutionStore,
) -> None:
    for i in range(3):
        _start(store, f"old{i}", start_ms=NOW - 2 * MINUTE + 1)  # out of any window below
    for i in range(4):
        _start(store, f"prev{i}", start_ms=NOW - MINUTE + 10)
    assert _usage(store, now_ms=NOW).starts_last_minute(NOW) == 4
    for i in range(2):
        _start(store, f"now{i}", start_ms=NOW + 10)
    # Half-way through the minute half the previous minute's starts still count.
    half = NOW + MINUTE // 2
    assert _usage(store, now_ms=half).starts_last_minute(half) == 2 + 2
    later = NOW + 3 * MINUTE
    assert _usage(store, now_ms=later).starts_last_minute(later) == 0


def test_each_tenant_reads_only_its_own_counters(store: ExecutionStore) -> None:
    _start(store, "mine", start_ms=NOW)
    theirs = _start(store, "theirs", start_ms=NOW, tenant=OTHER_TENANT)
    _close(store, theirs.arn, ExecutionStatus.FAILED)
    assert _statuses(_usage(store)) == {"RUNNING": 1}
    assert _statuses(_usage(store, OTHER_TENANT)) == {"FAILED": 1}
    assert _usage(store, "999999999999") == ExecutionCounts({}, 0, {})
