"""One contract for the notification stores: the status-event stream and outbox
(written by `ExecutionStore.commit`) and webhooks with their deliveries, on SQLite
(embedded) and DynamoDB (AWS, moto with `mock_aws`, a fresh account per test).

Commits are made the engine's way (`new_execution`, `open_working_set`, `to_commit`), so
these tests also hold the rule that a status change and its event are one commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws import DynamoExecutionStore, create_tables
from treadle.adapters.aws.dynamodb_notifications import DynamoStatusEvents, DynamoWebhookStore
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.notifications import SqliteStatusEvents, SqliteWebhookStore
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.start import new_execution
from treadle.domain.engine.working_set import open_working_set, to_commit
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    InvalidParameter,
    NotFound,
)
from treadle.domain.models import DurableConfig, Execution, ExecutionStatus
from treadle.domain.notification_ports import StatusEventStore, WebhookStore
from treadle.domain.notifications import Attempt, Webhook, delivery_for
from treadle.domain.ports import ExecutionStore, FunctionVersion

T = "123456789012"
OTHER = "210987654321"
TABLE = "treadle-test"
REGION = "us-east-1"
T0 = 1_700_000_000_000
LATER = T0 + 86_400_000  # a reader long after every commit (past any settle window)


@dataclass
class Stores:
    kind: str
    executions: ExecutionStore
    events: StatusEventStore
    webhooks: WebhookStore


def _sqlite(tmp: Path) -> tuple[Stores, Callable[[], None]]:
    db = Database(tmp / "treadle.db")
    stores = Stores(
        "sqlite", SqliteExecutionStore(db), SqliteStatusEvents(db), SqliteWebhookStore(db)
    )
    return stores, db.close


def _dynamodb(tmp: Path) -> tuple[Stores, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    stores = Stores(
        "dynamodb",
        DynamoExecutionStore(client, TABLE),
        DynamoStatusEvents(client, TABLE),
        DynamoWebhookStore(client, TABLE),
    )
    return stores, lambda: mock.__exit__(None, None, None)


BACKENDS = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(BACKENDS))
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stores]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    instance, cleanup = BACKENDS[request.param](tmp_path)
    yield instance
    cleanup()


def _fn(tenant: str = T, function: str = "f") -> FunctionVersion:
    return FunctionVersion(
        tenant=tenant,
        function_name=function,
        version="$LATEST",
        function_arn=f"arn:aws:lambda:{REGION}:{tenant}:function:{function}",
        handler="h.handler",
        durable_config=DurableConfig(ExecutionTimeout=3600),
        code_sha256="x",
        code_size=1,
        code_key="k",
        last_modified_ms=0,
        revision_id="r",
    )


def _start(s: Stores, name: str, now_ms: int = T0, tenant: str = T) -> Execution:
    ex, ws = new_execution(
        _fn(tenant), name, f"id-{name}", "{}", now_ms=now_ms, config=EngineConfig(), parent=None
    )
    s.executions.create(to_commit(ex, ws, 1.0))
    return ex


def _set_status(s: Stores, arn: str, status: ExecutionStatus, now_ms: int) -> Execution:
    ex, ws = open_working_set(s.executions.load(arn), now_ms)
    ex.status = status
    if status not in (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED):
        ex.end_ms = now_ms
    s.executions.commit(to_commit(ex, ws, 1.0))
    return ex


def _all(s: Stores, tenant: str = T) -> list[tuple[str, str]]:
    events, _ = s.events.read(tenant, None, 1000, LATER)
    return [(e.name, e.status) for e in events]


# -- the stream ------------------------------------------------------------------------


def test_a_start_and_a_close_are_on_the_stream_in_commit_order(stores: Stores) -> None:
    ex = _start(stores, "run1")
    _set_status(stores, ex.arn, ExecutionStatus.SUCCEEDED, T0 + 10)
    events, _ = stores.events.read(T, None, 10, LATER)
    assert [(e.status, e.previous_status) for e in events] == [
        ("RUNNING", None),
        ("SUCCEEDED", "RUNNING"),
    ]
    closed = events[1]
    assert closed.arn == ex.arn
    assert closed.function_arn == f"arn:aws:lambda:{REGION}:{T}:function:f:$LATEST"
    assert (closed.start_ms, closed.end_ms) == (T0, T0 + 10)
    assert len({e.id for e in events}) == 2


def test_a_commit_that_changes_no_status_writes_no_event(stores: Stores) -> None:
    ex = _start(stores, "run1")
    snap = stores.executions.load(ex.arn)
    loaded, ws = open_working_set(snap, T0 + 5)
    loaded.invocation_active = True
    stores.executions.commit(to_commit(loaded, ws, 1.0))
    assert _all(stores) == [("run1", "RUNNING")]


def test_a_commit_that_loses_its_race_leaves_no_event(stores: Stores) -> None:
    ex = _start(stores, "run1")
    snap = stores.executions.load(ex.arn)
    _set_status(stores, ex.arn, ExecutionStatus.PAUSED, T0 + 5)
    stale, ws = open_working_set(snap, T0 + 6)
    stale.status = ExecutionStatus.STOPPED
    with pytest.raises(ConcurrentModification):
        stores.executions.commit(to_commit(stale, ws, 1.0))
    assert _all(stores) == [("run1", "RUNNING"), ("run1", "PAUSED")]


def test_the_cursor_pages_through_the_stream_and_can_be_read_again(stores: Stores) -> None:
    for i in range(5):
        _start(stores, f"run{i}", now_ms=T0 + i)
    first, cursor = stores.events.read(T, None, 2, LATER)
    again, same = stores.events.read(T, None, 2, LATER)
    assert [e.id for e in first] == [e.id for e in again] and cursor == same
    names = [e.name for e in first]
    while True:
        page, cursor = stores.events.read(T, cursor, 2, LATER)
        if not page:
            break
        names += [e.name for e in page]
    assert names == [f"run{i}" for i in range(5)]
    empty, after = stores.events.read(T, cursor, 2, LATER)
    assert empty == [] and after == cursor  # nothing new: the same cursor reads on
    ex = stores.executions.find_by_name(T, "f", "run0")
    assert ex is not None
    _set_status(stores, ex.arn, ExecutionStatus.STOPPED, T0 + 100)
    new, _ = stores.events.read(T, cursor, 10, LATER)
    assert [(e.name, e.status) for e in new] == [("run0", "STOPPED")]


def test_a_reader_from_the_tail_sees_exactly_what_is_committed_after(stores: Stores) -> None:
    for i in range(3):
        _start(stores, f"old{i}", now_ms=T0 + i)
    tail = stores.events.tail(T, LATER)
    assert stores.events.read(T, tail, 10, LATER) == ([], tail)
    assert (
        stores.events.tail(OTHER, LATER) != ""
        and stores.events.read(OTHER, None, 10, LATER)[0] == []
    )
    # Committed after the tail was taken (a commit's time is its clock's now).
    _start(stores, "new", now_ms=LATER + 1)
    _start(stores, "theirs", now_ms=LATER + 2, tenant=OTHER)
    events, _ = stores.events.read(T, tail, 10, LATER + 86_400_000)
    assert [(e.name, e.status) for e in events] == [("new", "RUNNING")]


def test_another_tenant_sees_none_of_a_tenants_events(stores: Stores) -> None:
    _start(stores, "mine")
    _start(stores, "theirs", tenant=OTHER)
    assert _all(stores, T) == [("mine", "RUNNING")]
    assert _all(stores, OTHER) == [("theirs", "RUNNING")]
    # A cursor holds only a position: used by the other tenant it shows that tenant's own.
    _, cursor = stores.events.read(T, None, 10, LATER)
    events, _ = stores.events.read(OTHER, cursor, 10, LATER)
    assert all(e.tenant == OTHER for e in events)


@pytest.mark.parametrize("cursor", ["garbage", "", "Yzk6eA", "x" * 500])
def test_a_cursor_the_store_did_not_make_is_refused(stores: Stores, cursor: str) -> None:
    with pytest.raises(InvalidParameter):
        stores.events.read(T, cursor, 10, LATER)


def test_an_event_stays_in_the_outbox_until_relayed_and_on_the_stream_after(
    stores: Stores,
) -> None:
    ex = _start(stores, "run1")
    _set_status(stores, ex.arn, ExecutionStatus.FAILED, T0 + 1)
    pending = stores.events.unrelayed(10)
    assert [e.status for e in pending] == ["RUNNING", "FAILED"]
    stores.events.mark_relayed(pending[:1])
    assert [e.status for e in stores.events.unrelayed(10)] == ["FAILED"]
    stores.events.mark_relayed(pending)
    assert stores.events.unrelayed(10) == []
    assert _all(stores) == [("run1", "RUNNING"), ("run1", "FAILED")]


def test_events_taken_out_of_the_middle_of_the_outbox_leave_the_others_in_it(
    stores: Stores,
) -> None:
    for i in range(4):
        _start(stores, f"run{i}", T0 + i)
    pending = stores.events.unrelayed(10)
    assert len(pending) == 4
    # Newer than the oldest, and one already taken out: both leave exactly the rest.
    stores.events.mark_relayed([pending[2]])
    stores.events.mark_relayed([pending[1], pending[2]])
    assert [e.name for e in stores.events.unrelayed(10)] == ["run0", "run3"]
    stores.events.mark_relayed(pending)
    assert stores.events.unrelayed(10) == []


def test_sqlite_takes_the_oldest_events_out_of_a_long_outbox_without_reading_it_all(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "treadle.db")
    try:
        stores = Stores(
            "sqlite", SqliteExecutionStore(db), SqliteStatusEvents(db), SqliteWebhookStore(db)
        )
        for i in range(3000):
            _start(stores, f"run{i}", T0 + i)
        batch = stores.events.unrelayed(100)
        with db.file.locked() as conn:  # the writer's connection: the update runs on it
            steps = [0]

            def count() -> int:
                steps[0] += 1
                return 0

            conn.set_progress_handler(count, 100)  # per 100 VM instructions
            try:
                stores.events.mark_relayed(batch)
            finally:
                conn.set_progress_handler(None, 0)
        # A look per event through the 3,000-row outbox is ~150 handler calls each.
        assert steps[0] < 1000, steps[0]
        assert [e.name for e in stores.events.unrelayed(1)] == ["run100"]
    finally:
        db.close()


# -- webhooks and deliveries -----------------------------------------------------------


def _hook(hook_id: str = "wh_" + "0" * 24, tenant: str = T, **kwargs: Any) -> Webhook:
    return Webhook(
        id=hook_id,
        tenant=tenant,
        url="https://example.com/hook",
        secret="whsec_c2VjcmV0",
        created_ms=T0,
        **kwargs,
    )


def test_a_webhook_is_created_read_listed_and_deleted(stores: Stores) -> None:
    hook = _hook(statuses=("FAILED",))
    stores.webhooks.create_webhook(hook)
    second = _hook("wh_" + "1" * 24)
    stores.webhooks.create_webhook(second)
    assert stores.webhooks.get_webhook(T, hook.id) == hook
    assert stores.webhooks.list_webhooks(T) == [hook, second]
    with pytest.raises(AlreadyExists):
        stores.webhooks.create_webhook(hook)
    stores.webhooks.delete_webhook(T, hook.id)
    assert stores.webhooks.list_webhooks(T) == [second]
    with pytest.raises(NotFound):
        stores.webhooks.get_webhook(T, hook.id)
    with pytest.raises(NotFound):
        stores.webhooks.delete_webhook(T, hook.id)


def test_another_tenant_cannot_read_or_delete_a_webhook(stores: Stores) -> None:
    hook = _hook()
    stores.webhooks.create_webhook(hook)
    with pytest.raises(NotFound):
        stores.webhooks.get_webhook(OTHER, hook.id)
    with pytest.raises(NotFound):
        stores.webhooks.delete_webhook(OTHER, hook.id)
    assert stores.webhooks.list_webhooks(OTHER) == []
    assert stores.webhooks.get_webhook(T, hook.id) == hook


def test_a_delivery_is_added_once_retried_when_due_and_kept_in_history(stores: Stores) -> None:
    hook = _hook()
    stores.webhooks.create_webhook(hook)
    ex = _start(stores, "run1")
    event = stores.events.unrelayed(1)[0]
    first = delivery_for(hook, event, event.time_ms)
    stores.webhooks.add_deliveries([first])
    stores.webhooks.add_deliveries([first])  # the outbox relayed twice: still one
    assert stores.webhooks.due_deliveries(T0 - 1, 10) == []
    due = stores.webhooks.due_deliveries(event.time_ms, 10)
    assert due == [first]
    failed = first.after(Attempt(at_ms=event.time_ms, status_code=500))
    stores.webhooks.save_delivery(due[0], failed)
    with pytest.raises(ConcurrentModification):
        stores.webhooks.save_delivery(due[0], failed)  # that attempt is recorded already
    assert failed.next_attempt_ms == event.time_ms + 5000
    assert stores.webhooks.due_deliveries(event.time_ms + 4999, 10) == []
    retry = stores.webhooks.due_deliveries(event.time_ms + 5000, 10)
    assert retry == [failed]
    done = failed.after(Attempt(at_ms=event.time_ms + 5000, status_code=204))
    stores.webhooks.save_delivery(retry[0], done)
    assert stores.webhooks.due_deliveries(LATER, 10) == []
    history = stores.webhooks.deliveries(T, hook.id, 10)
    assert [(d.state, [a.status_code for a in d.attempts]) for d in history] == [
        ("DELIVERED", [500, 204])
    ]
    assert history[0].event.arn == ex.arn
    assert stores.webhooks.deliveries(OTHER, hook.id, 10) == []


def test_deliveries_are_listed_newest_event_first(stores: Stores) -> None:
    hook = _hook()
    stores.webhooks.create_webhook(hook)
    for i in range(3):
        _start(stores, f"run{i}", now_ms=T0 + i)
    events = stores.events.unrelayed(10)
    stores.webhooks.add_deliveries([delivery_for(hook, e, e.time_ms) for e in events])
    listed = stores.webhooks.deliveries(T, hook.id, 2)
    assert [d.event.name for d in listed] == ["run2", "run1"]
    assert [d.event.name for d in stores.webhooks.due_deliveries(LATER, 10)] == [
        "run0",
        "run1",
        "run2",
    ]


# -- what only the DynamoDB adapter has ------------------------------------------------


def test_dynamodb_hands_out_an_event_only_once_its_settle_window_passed(
    stores: Stores,
) -> None:
    if stores.kind != "dynamodb":
        pytest.skip("SQLite commits one at a time: its order needs no window")
    ex = _start(stores, "run1")
    young, cursor = stores.events.read(T, None, 10, T0 + 100)
    assert young == []  # a commit keyed just before it may still be landing
    settled, _ = stores.events.read(T, cursor, 10, T0 + 3_001)
    assert [e.arn for e in settled] == [ex.arn]
