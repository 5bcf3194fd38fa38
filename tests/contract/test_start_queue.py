"""One contract for every StartQueue adapter: SQLite (embedded) and DynamoDB (AWS, moto
with `mock_aws()` per test). Admission (run now, queue, or 429 past maxQueued), FIFO
promotion as capacity frees, round-robin between tenants, and promotions that race or
die midway: each queued start runs once, never lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.engine_harness import REGION, Harness, harness_on
from support.fakes import ManualClock
from treadle.adapters.aws import DynamoExecutionStore
from treadle.adapters.aws.start_queue import DynamoStartQueue
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.start_queue import SqliteStartQueue
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.promoter import Promoter
from treadle.app.quotas import TenantQuotas
from treadle.domain.engine import Engine
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import Commit, ExecutionStore, FunctionVersion, TimerKind
from treadle.domain.start_queue import StartQueue
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.errors import RateExceeded
from treadle.tenancy.models import Quotas

TABLE = "treadle-queue"


class World:
    def __init__(self, h: Harness, queue: StartQueue, tmp: Path) -> None:
        self.h = h
        self.store = SqliteTenantStore(tmp / "tenants.sqlite")
        self.admin = TenantAdmin(self.store, ManualClock())
        self.queue = queue
        self.guard = QuotaGuard(monotonic=lambda: 0.0)  # a frozen bucket: tests spend it
        self.quotas = TenantQuotas(
            self.admin,
            executions=self.h.store,
            functions=self.h.functions,
            guard=self.guard,
            queue=self.queue,
        )
        self.promoted: list[str] = []
        self.promoter = self.promoter_on(self.h.engine)
        promote = self.h.engine.promote

        def recorded(arn: str) -> bool:
            ok = promote(arn)
            if ok:
                self.promoted.append(arn)
            return ok

        self.h.engine.promote = recorded  # type: ignore[method-assign]

    def promoter_on(self, engine: Engine) -> Promoter:
        return Promoter(
            tenants=self.admin,
            executions=self.h.store,
            queue=self.queue,
            engine=engine,
            guard=self.guard,
        )

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

    def queued_count(self, tenant: str) -> int:
        """QUEUED in the usage counters (what `GET /v1/tenants/{id}/usage` shows)."""
        return self.h.store.usage(tenant, self.h.clock.now_ms()).status("QUEUED")


@pytest.fixture(params=["sqlite", "dynamodb"])
def w(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    kind: str = request.param
    with harness_on(kind, tmp_path, monkeypatch, TABLE) as h:
        queue: StartQueue = (
            SqliteStartQueue(h.db) if kind == "sqlite" else DynamoStartQueue(h.dynamodb, TABLE)
        )
        world = World(h, queue, tmp_path)
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
    assert w.queued_count(fn.tenant) == 2
    assert w.queue.tenants_with_queued() == [fn.tenant]


def test_starts_over_the_rate_queue_too(w: World) -> None:
    fn = w.tenant(running=100, rate=1.0)
    assert w.start(fn, "a")[1] is ExecutionStatus.RUNNING
    assert w.start(fn, "b")[1] is ExecutionStatus.QUEUED


def test_the_queue_lists_a_tenants_starts_oldest_first_and_only_its_own(w: World) -> None:
    fn = w.tenant(running=0)
    other = w.tenant(running=0)
    arns = []
    for i in range(5):
        arns.append(w.start(fn, f"q{i}")[0])
        w.h.clock.advance(1)
    theirs = w.start(other, "theirs")[0]
    assert w.queue.oldest_queued(fn.tenant, 3) == arns[:3]
    assert w.queue.oldest_queued(fn.tenant, 10) == arns
    assert w.queue.oldest_queued(other.tenant, 10) == [theirs]
    assert w.queue.oldest_queued(fn.tenant, 0) == []
    assert w.queue.tenants_with_queued() == sorted([fn.tenant, other.tenant])
    assert w.queue.count_queued(fn.tenant) == 5 and w.queue.count_queued(other.tenant) == 1


def test_queued_starts_are_promoted_in_fifo_order_as_capacity_frees(w: World) -> None:
    fn = w.tenant(running=1)
    first, _ = w.start(fn, "first")
    queued = []
    for i in range(3):
        w.h.clock.advance(1)
        queued.append(w.start(fn, f"q{i}")[0])
    assert w.promoter.promote() == 0  # no capacity: nothing moves
    w.h.engine.stop(first, None)
    assert w.promoter.promote() == 1
    assert w.promoted == [queued[0]]
    assert w.h.store.get(queued[0]).status is ExecutionStatus.RUNNING
    assert [w.h.store.get(a).status for a in queued[1:]] == [ExecutionStatus.QUEUED] * 2
    assert w.queue.oldest_queued(fn.tenant, 5) == queued[1:]
    assert w.queue.count_queued(fn.tenant) == 2 and w.queued_count(fn.tenant) == 2
    # While the tenant has a backlog, a new start queues behind it even with capacity.
    w.h.engine.stop(queued[0], None)
    assert w.start(fn, "late")[1] is ExecutionStatus.QUEUED
    assert w.promoter.promote() == 1 and w.promoted[-1] == queued[1]


def test_a_promoted_start_runs_with_its_timeout_counted_from_the_promotion(w: World) -> None:
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "waits")
    w.h.clock.advance(10_000)
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 1})
    assert w.promoter.promote() == 1
    timers = {t.kind: t.due_ms for t in w.h.store.due_timers(10**15, 100) if t.arn == arn}
    now = w.h.clock.now_ms()
    assert timers[TimerKind.INVOKE] == now
    assert timers[TimerKind.EXECUTION_TIMEOUT] == now + fn.durable_config.ExecutionTimeout * 1000


def test_a_stopped_queued_start_leaves_the_queue(w: World) -> None:
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "gone")
    w.h.engine.stop(arn, None)
    assert w.queue.count_queued(fn.tenant) == 0 and w.queue.oldest_queued(fn.tenant, 5) == []
    assert w.queue.tenants_with_queued() == []
    assert w.queued_count(fn.tenant) == 0
    # And a drained tenant queues again as before.
    assert w.start(fn, "again")[1] is ExecutionStatus.QUEUED
    assert w.queue.tenants_with_queued() == [fn.tenant]


def test_tenants_with_a_backlog_are_served_in_turn(w: World) -> None:
    big = w.tenant(running=0)
    small = w.tenant(running=0)
    bigs = []
    for i in range(20):
        w.h.clock.advance(1)
        bigs.append(w.start(big, f"b{i}")[0])
    (lone, _) = w.start(small, "s0")
    # Capacity arrives for both at once: the small tenant's start is among the first
    # two promoted, not after the big tenant's twenty.
    for account in (big.tenant, small.tenant):
        w.admin.update_quotas(account, {"max_running_executions": 100})
    assert w.promoter.promote() == 21
    assert lone in w.promoted[:2]
    # Each tenant's own starts stayed in FIFO order.
    assert [a for a in w.promoted if a != lone] == bigs
    assert w.queue.tenants_with_queued() == []


class RacingStore:
    """An execution store whose next commit lets `rival` run first: another promoter
    (another process, with its own cache) that loaded the same QUEUED execution and
    wins the race between this one's load and its commit."""

    def __init__(self, inner: ExecutionStore, rival: Callable[[], object]) -> None:
        self._inner = inner
        self._rival: Callable[[], object] | None = rival

    def commit(self, commit: Commit) -> None:
        rival, self._rival = self._rival, None
        if rival is not None:
            rival()
        self._inner.commit(commit)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _second_engine(w: World, store: ExecutionStore) -> Engine:
    h = w.h
    return Engine(
        store=store,
        functions=h.functions,
        runtime=h.runtime,
        clock=h.clock,
        ids=h.engine.ids,
        tokens=h.engine.tokens,
        dispatcher=h,
        listener=h,
        config=h.engine.config,
    )


def _fresh_store(w: World) -> ExecutionStore:
    """Another writer over the same data, with its own cache."""
    if isinstance(w.queue, SqliteStartQueue):
        return SqliteExecutionStore(w.h.db)
    return DynamoExecutionStore(boto3.client("dynamodb", region_name=REGION), TABLE)


def test_two_promoters_racing_for_one_queued_start_run_it_once(w: World, tmp_path: Path) -> None:
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "contested")
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 5})
    rival = _second_engine(w, _fresh_store(w))
    results: list[bool] = []
    racing = RacingStore(_fresh_store(w), lambda: results.append(rival.promote(arn)))
    loser = _second_engine(w, racing)  # type: ignore[arg-type]
    results.append(loser.promote(arn))
    assert results == [True, False]
    ex = w.h.store.get(arn)
    assert ex.status is ExecutionStatus.RUNNING
    history = w.h.history(arn)
    assert history.count("ExecutionStarted") == 1
    invokes = [t for t in w.h.store.due_timers(10**15, 100) if t.arn == arn]
    assert [t.kind for t in invokes].count(TimerKind.INVOKE) == 1
    assert w.queue.count_queued(fn.tenant) == 0 and w.queue.oldest_queued(fn.tenant, 5) == []
    assert w.queued_count(fn.tenant) == 0
    assert w.h.store.count_running(fn.tenant) == 1


def test_a_promotion_that_dies_midway_leaves_the_start_queued_for_the_next_pass(
    w: World,
) -> None:
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "survivor")
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 5})

    class Killed(Exception):
        pass

    class Dying:
        """The promoter's process dies after choosing the start, before its write."""

        def promote(self, arn: str) -> bool:
            raise Killed

    with pytest.raises(Killed):
        w.promoter_on(Dying()).promote()  # type: ignore[arg-type]
    assert w.h.store.get(arn).status is ExecutionStatus.QUEUED
    assert w.queue.oldest_queued(fn.tenant, 5) == [arn]
    assert w.promoter.promote() == 1 and w.promoted == [arn]
    assert w.promoter.promote() == 0  # nothing twice
    assert w.queue.tenants_with_queued() == []


def test_a_bounded_pass_promotes_at_most_its_limit_and_the_next_pass_goes_on(w: World) -> None:
    fn = w.tenant(running=0)
    arns = []
    for i in range(5):
        w.h.clock.advance(1)
        arns.append(w.start(fn, f"q{i}")[0])
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 10})
    assert w.promoter.promote(limit=2) == 2
    assert w.promoted == arns[:2] and w.queue.count_queued(fn.tenant) == 3
    assert w.promoter.promote(limit=2) == 2
    assert w.promoter.promote() == 1
    assert w.promoted == arns and w.queue.tenants_with_queued() == []


# -- what only the DynamoDB adapter has ----------------------------------------------


def _ttl(arn: str, sk: str = "META") -> int | None:
    client = boto3.client("dynamodb", region_name=REGION)
    item = client.get_item(
        TableName=TABLE, Key={"pk": {"S": f"X#{arn}"}, "sk": {"S": sk}}, ConsistentRead=True
    )["Item"]
    return int(item["ttl"]["N"]) if "ttl" in item else None


def test_on_dynamodb_a_start_queued_for_days_is_not_reclaimed_by_ttl(w: World) -> None:
    if isinstance(w.queue, SqliteStartQueue):
        pytest.skip("TTL is DynamoDB's")
    fn = w.tenant(running=0)
    arn, _ = w.start(fn, "patient")
    assert _ttl(arn) is None  # queued: no deadline, however long it waits
    w.h.clock.advance(30 * 86_400_000)
    w.admin.update_quotas(fn.tenant, {"max_running_executions": 1})
    assert w.promoter.promote() == 1
    ex = w.h.store.get(arn)
    ttl = _ttl(arn)
    # From the promotion on, the bound holds as for any execution: past its timeout and
    # retention counted from now, not from its acceptance 30 days ago.
    floor = w.h.clock.now_ms() // 1000 + ex.execution_timeout_s + ex.retention_days * 86_400
    assert ttl is not None and ttl > floor


def test_on_dynamodb_another_tenants_start_makes_the_same_calls_whatever_a_backlog(
    w: World,
) -> None:
    """Fairness at admission: no read of a start grows with another tenant's queue."""
    if isinstance(w.queue, SqliteStartQueue):
        pytest.skip("counts DynamoDB calls")
    big = w.tenant(running=0, queued=1_000)
    small = w.tenant(running=1_000)
    events = w.h.dynamodb.meta.events

    def calls_of_a_start(name: str) -> list[str]:
        seen: list[str] = []

        def record(model: Any, **_: Any) -> None:
            seen.append(model.name)

        events.register("before-call.dynamodb", record)
        try:
            assert w.start(small, name)[1] is ExecutionStatus.RUNNING
        finally:
            events.unregister("before-call.dynamodb", record)
        return seen

    alone = calls_of_a_start("alone")
    for i in range(25):
        w.start(big, f"b{i}")
    assert w.queue.count_queued(big.tenant) == 25
    assert calls_of_a_start("beside-a-backlog") == alone
    assert "Scan" not in alone


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
