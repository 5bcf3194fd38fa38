"""One contract for every Dispatcher: the in-process scheduler (embedded) and SQS (AWS).

Each harness wires a dispatcher the way its platform does: timers are rows in a store
(here `TimerTable`, an in-memory stand-in for the store's timer rows), the engine's
stand-in (`Engine.fire`) clears the timer it fires as the engine does, and time is a
manual clock. The SQS harness runs under moto with moto's SQS clock tied to the same
manual clock, so DelaySeconds and visibility timeouts elapse when the test says so; it
plays the event source mapping (receive, `handle_messages`, delete what did not fail)
and the scheduled sweep (`sweep` once per simulated minute).

Tests at the end exercise what only the AWS side has: the wire format, early messages,
the sweep's selection and the table-side timer check against the DynamoDB store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

import boto3
import moto.sqs.models
import pytest
from moto import mock_aws

from support.fakes import ManualClock
from treadle.adapters.aws import DynamoExecutionStore, create_tables
from treadle.adapters.aws.sqs_dispatcher import (
    SqsDispatcher,
    batch_response,
    decode_timer,
    encode_timer,
    handle_messages,
)
from treadle.adapters.aws.sweep import DynamoTimerLookup, resend_due, resend_overdue, sweep
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Commit, ExecutionStore, Timer, TimerKind

REGION = "us-east-1"
MINUTE = 60_000
VISIBILITY_S = 30
ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:1/durable-execution/{}/id-{}"


def arn(name: str) -> str:
    return ARN.format(name, name)


# -- stand-ins for the store and the engine ----------------------------------------------


class TimerTable:
    """The store's timer rows: one due time per (execution, kind, operation)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, TimerKind, str], int] = {}
        self._lock = threading.Lock()

    def set(self, *timers: Timer) -> None:
        with self._lock:
            for t in timers:
                self._rows[(t.arn, t.kind, t.op_id)] = t.due_ms

    def clear(self, timer: Timer) -> None:
        with self._lock:
            if self._rows.get((timer.arn, timer.kind, timer.op_id)) == timer.due_ms:
                del self._rows[(timer.arn, timer.kind, timer.op_id)]

    def all(self) -> list[Timer]:
        with self._lock:
            return sorted(
                (Timer(a, k, o, d) for (a, k, o), d in self._rows.items()),
                key=lambda t: (t.due_ms, t.arn, t.kind.value, t.op_id),
            )

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
        return [t for t in self.all() if t.due_ms <= now_ms][:limit]

    def next_due_ms(self) -> int | None:
        timers = self.all()
        return timers[0].due_ms if timers else None

    def is_set(self, timer: Timer) -> bool:
        with self._lock:
            return self._rows.get((timer.arn, timer.kind, timer.op_id)) == timer.due_ms


class Engine:
    def __init__(self, table: TimerTable) -> None:
        self.table = table
        self.fired: list[Timer] = []
        self.failing: set[Timer] = set()
        self._lock = threading.Lock()

    def fire(self, timer: Timer) -> None:
        with self._lock:
            self.fired.append(timer)
        if timer in self.failing:
            raise RuntimeError(f"cannot fire {timer}")
        self.table.clear(timer)  # every path of the engine's fire clears its timer


# -- harnesses -------------------------------------------------------------------------


class Harness(Protocol):
    kind: str
    clock: ManualClock
    table: TimerTable
    engine: Engine

    def set(self, *timers: Timer) -> list[Timer]:
        """Write the rows and dispatch them, as the engine after a commit."""

    def redeliver(self, timer: Timer) -> None: ...

    def tick(self) -> None:
        """What runs every minute (the sweep)."""

    def settle(self) -> None:
        """Deliver whatever is deliverable now."""

    def close(self) -> None: ...


def run_for(h: Harness, ms: int, step: int = MINUTE) -> None:
    while ms > 0:
        h.clock.advance(min(step, ms))
        ms -= step
        h.tick()
        h.settle()


class EmbeddedHarness:
    kind = "embedded"

    def __init__(self) -> None:
        self.clock = ManualClock(int(time.time() * 1000))
        self.table = TimerTable()
        self.engine = Engine(self.table)
        # The scheduler reads only due_timers / next_due_ms of its store.
        store = cast(ExecutionStore, self.table)
        self.scheduler = TimerScheduler(
            store, self.clock, self.engine.fire, workers=4, invoke_workers=4
        )
        self.scheduler.start()
        self.dispatcher = self.scheduler

    def set(self, *timers: Timer) -> list[Timer]:
        self.table.set(*timers)
        return self.dispatcher.dispatch(timers, self.clock.now_ms())

    def redeliver(self, timer: Timer) -> None:
        self.dispatcher.dispatch([timer], self.clock.now_ms())

    def tick(self) -> None:
        sweep(self.table, self.dispatcher, self.clock.now_ms())

    def settle(self) -> None:
        # The loop runs on its own thread: wait until every due row it may fire is gone
        # (the engine clears what it fires) and firing has stopped for a moment.
        stable, seen, deadline = 0, -1, time.monotonic() + 5
        while time.monotonic() < deadline:
            self.scheduler.wake(self.clock.now_ms())
            time.sleep(0.02)
            count = len(self.engine.fired)
            stable = stable + 1 if count == seen else 0
            seen = count
            due = self.table.due_timers(self.clock.now_ms(), 1000)
            if stable >= 2 and all(t in self.engine.failing for t in due):
                return

    def close(self) -> None:
        self.scheduler.stop()


class CountingSqs:
    """The moto client, with the batches sent recorded."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.batches.append(list(kwargs["Entries"]))
        return self.real.send_message_batch(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class SqsHarness:
    kind = "sqs"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = ManualClock(int(time.time() * 1000))
        # moto's SQS keeps delays and visibility in its own wall clock: use ours.
        monkeypatch.setattr(moto.sqs.models, "unix_time_millis", lambda: float(self.clock.now_ms()))
        self._mock: AbstractContextManager[Any] = mock_aws()
        self._mock.__enter__()
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.url = self.sqs.create_queue(
            QueueName="treadle-work", Attributes={"VisibilityTimeout": str(VISIBILITY_S)}
        )["QueueUrl"]
        self.client = CountingSqs(self.sqs)
        self.dispatcher = SqsDispatcher(cast(Any, self.client), self.url, sleep=lambda _: None)
        self.table = TimerTable()
        self.engine = Engine(self.table)
        self.failed_ids: list[str] = []

    def set(self, *timers: Timer) -> list[Timer]:
        self.table.set(*timers)
        return self.dispatcher.dispatch(timers, self.clock.now_ms())

    def redeliver(self, timer: Timer) -> None:
        self.dispatcher.dispatch([timer], self.clock.now_ms())

    def tick(self) -> None:
        sweep(self.table, self.dispatcher, self.clock.now_ms())

    def settle(self) -> None:
        # The event source mapping: receive, handle, delete all but the failures.
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                return
            records = [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                }
                for m in got
            ]
            failed = handle_messages(
                records,
                self.engine.fire,
                current=self.table,
                requeue=self.dispatcher,
                clock=self.clock,
            )
            self.failed_ids.extend(failed)
            for m in got:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def sent(self) -> list[Timer]:
        return [decode_timer(e["MessageBody"]) for batch in self.client.batches for e in batch]

    def queue_counts(self) -> tuple[int, int, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        visible, invisible, delayed = (int(attrs["Attributes"][n]) for n in names)
        return visible, invisible, delayed

    def close(self) -> None:
        self._mock.__exit__(None, None, None)


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(params=["embedded", "sqs"])
def h(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    _aws_env(monkeypatch)
    harness: Harness = EmbeddedHarness() if request.param == "embedded" else SqsHarness(monkeypatch)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def s(monkeypatch: pytest.MonkeyPatch) -> Iterator[SqsHarness]:
    _aws_env(monkeypatch)
    harness = SqsHarness(monkeypatch)
    try:
        yield harness
    finally:
        harness.close()


def sqs_only(h: Harness) -> SqsHarness | None:
    return h if isinstance(h, SqsHarness) else None


# -- the contract ----------------------------------------------------------------------


def test_a_timer_due_now_is_delivered(h: Harness) -> None:
    timer = Timer(arn("now"), TimerKind.INVOKE, "", h.clock.now_ms())
    assert h.set(timer) == []
    h.settle()
    assert h.engine.fired == [timer]
    assert h.table.all() == []


def test_a_timer_is_not_delivered_before_it_is_due(h: Harness) -> None:
    timer = Timer(arn("soon"), TimerKind.WAIT, "w", h.clock.now_ms() + 5_000)
    assert h.set(timer) == []
    h.settle()
    run_for(h, 4_000, step=1_000)
    assert h.engine.fired == []
    run_for(h, 1_000)
    assert h.engine.fired == [timer]


def test_a_far_timer_is_left_to_the_sweep_then_delivered_once(h: Harness) -> None:
    timer = Timer(arn("far"), TimerKind.WAIT, "w", h.clock.now_ms() + 20 * MINUTE)
    deferred = h.set(timer)
    if (s := sqs_only(h)) is not None:
        assert deferred == [timer] and s.sent() == []  # beyond SQS's 15 minutes
    else:
        assert deferred == []  # the in-process loop reads every row itself
    run_for(h, 19 * MINUTE)
    assert h.engine.fired == []
    if s is not None:
        # The sweep sent it once, when it entered the 15-minute horizon, delayed to its due.
        assert s.sent() == [timer]
        assert s.queue_counts() == (0, 0, 1)
        assert json.loads(s.client.batches[0][0]["MessageBody"])["due_ms"] == timer.due_ms
        assert s.client.batches[0][0]["DelaySeconds"] == 900
    run_for(h, MINUTE)
    assert h.engine.fired == [timer]
    run_for(h, 10 * MINUTE)
    assert h.engine.fired == [timer]
    if s is not None:
        assert s.sent() == [timer]


def test_more_than_ten_timers_are_sent_in_batches_of_ten(h: Harness) -> None:
    now = h.clock.now_ms()
    timers = [Timer(arn(f"b{i}"), TimerKind.INVOKE, "", now) for i in range(25)]
    assert h.set(*timers) == []
    h.settle()
    assert sorted(h.engine.fired, key=lambda t: t.arn) == sorted(timers, key=lambda t: t.arn)
    if (s := sqs_only(h)) is not None:
        assert [len(batch) for batch in s.client.batches] == [10, 10, 5]


def test_a_failing_timer_comes_back_and_the_others_do_not(h: Harness) -> None:
    now = h.clock.now_ms()
    timers = [Timer(arn(f"f{i}"), TimerKind.RETRY, "r", now) for i in range(5)]
    bad = timers[2]
    h.engine.failing.add(bad)
    h.set(*timers)
    h.settle()
    assert sorted(h.engine.fired, key=lambda t: t.arn) == timers
    assert h.table.all() == [bad]
    if (s := sqs_only(h)) is not None:
        # Its message id is the partial failure; the four others were deleted.
        assert len(s.failed_ids) == 1
        assert s.queue_counts() == (0, 1, 0)
    h.engine.failing.clear()
    run_for(h, (VISIBILITY_S + 1) * 1000, step=(VISIBILITY_S + 1) * 1000)
    assert h.engine.fired.count(bad) == 2
    assert all(h.engine.fired.count(t) == 1 for t in timers if t != bad)
    assert h.table.all() == []


def test_delivering_a_timer_again_is_harmless(h: Harness) -> None:
    timer = Timer(arn("dup"), TimerKind.CALLBACK_TIMEOUT, "cb", h.clock.now_ms())
    h.set(timer)
    h.redeliver(timer)  # a duplicate in the same batch
    h.settle()
    h.redeliver(timer)  # a late duplicate, after it fired
    h.settle()
    run_for(h, 2 * MINUTE)
    assert h.engine.fired == [timer]


def test_a_timer_moved_after_it_was_sent_fires_only_at_its_new_time(h: Harness) -> None:
    now = h.clock.now_ms()
    first = Timer(arn("moved"), TimerKind.CALLBACK_HEARTBEAT, "cb", now + 1_000)
    h.set(first)
    moved = Timer(first.arn, first.kind, first.op_id, now + 10_000)  # a heartbeat came
    h.set(moved)
    run_for(h, 9_000, step=1_000)
    assert h.engine.fired == []
    run_for(h, 1_000)
    assert h.engine.fired == [moved]


# -- SQS specifics -----------------------------------------------------------------------


def test_the_wire_format_round_trips_and_refuses_garbage() -> None:
    timer = Timer(arn("w"), TimerKind.CHILD_DONE, "op-1", 1_700_000_000_123)
    assert decode_timer(encode_timer(timer)) == timer
    for body in ("", "[]", '{"v": 2}', '{"v":1,"arn":"a","kind":"NOPE","op_id":"","due_ms":1}'):
        with pytest.raises(ValueError):
            decode_timer(body)


def test_a_malformed_message_fails_so_that_it_reaches_the_dead_letter_queue() -> None:
    fired: list[Timer] = []
    timer = Timer(arn("ok"), TimerKind.INVOKE, "", 0)
    records = [
        {"messageId": "m1", "body": "not json"},
        {"messageId": "m2", "body": encode_timer(timer)},
    ]
    failed = handle_messages(records, fired.append)
    assert failed == ["m1"] and fired == [timer]
    assert batch_response(failed) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_an_early_message_is_sent_again_for_the_time_left(s: SqsHarness) -> None:
    timer = Timer(arn("early"), TimerKind.WAIT, "w", s.clock.now_ms() + 3_000)
    s.table.set(timer)
    # Sent by a producer whose clock ran 3 s ahead: no delay at all.
    s.sqs.send_message(QueueUrl=s.url, MessageBody=encode_timer(timer))
    s.settle()
    assert s.engine.fired == [] and s.failed_ids == []
    assert s.client.batches[-1][0]["DelaySeconds"] == 3
    run_for(s, 3_000)
    assert s.engine.fired == [timer]


def test_dispatch_rounds_delays_up_and_caps_them() -> None:
    dispatcher = SqsDispatcher(cast(Any, None), "url")
    assert dispatcher.delay_s(Timer("a", TimerKind.WAIT, "w", 1_001), 0) == 2
    assert dispatcher.delay_s(Timer("a", TimerKind.WAIT, "w", -5), 0) == 0
    assert dispatcher.delay_s(Timer("a", TimerKind.WAIT, "w", 900_000), 0) == 900


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, Timer]] = []

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        self.sent.extend((now_ms, t) for t in timers)
        return []


def test_overdue_timers_are_resent_at_doubling_ages() -> None:
    assert [age for age in range(0, 40) if resend_overdue(age * MINUTE, MINUTE)] == [
        1,
        2,
        4,
        8,
        16,
        32,
    ]
    assert not resend_overdue(MINUTE - 1, MINUTE)


def test_the_sweep_sends_a_timer_as_it_enters_the_horizon_then_only_when_overdue() -> None:
    table, recorder = TimerTable(), Recorder()
    start = 1_000_000_000
    far = Timer(arn("a"), TimerKind.WAIT, "w", start + 30 * MINUTE + 123)
    stuck = Timer(arn("b"), TimerKind.WAIT, "w", start - 10)  # its message was lost
    near = Timer(arn("c"), TimerKind.WAIT, "w", start + 5 * MINUTE)  # sent at its commit
    table.set(far, stuck, near)
    for minute in range(40):
        sweep(table, recorder, start + minute * MINUTE)
    sends = {
        t: [(now - start) // MINUTE for now, sent in recorder.sent if sent == t]
        for t in (far, stuck, near)
    }
    # Once as it entered the horizon (at minute 16: 30 min 123 ms > 15 + 15 min), then
    # (never fired here) only by the overdue net.
    assert sends[far] == [16, 32, 33, 35, 39]
    assert sends[near] == [6, 7, 9, 13, 21, 37]  # overdue: 1, 2, 4, 8, 16, 32 minutes late
    assert sends[stuck] == [1, 2, 4, 8, 16, 32]
    assert sweep(table, recorder, start, limit=1).truncated


def test_the_dynamodb_timer_lookup_sees_what_the_store_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, "treadle-test")
        store = DynamoExecutionStore(client, "treadle-test")
        parent, child = _create(store, "parent"), _create(store, "child")
        own = Timer(parent.arn, TimerKind.WAIT, "w", 5_000)
        outbox = Timer(parent.arn, TimerKind.CHILD_DONE, "op-1", 6_000)
        _commit(store, parent.arn, set_timers=[own])
        _commit(store, child.arn, set_timers=[outbox])  # a timer on another execution
        lookup = DynamoTimerLookup(client, "treadle-test")
        assert lookup.is_set(own) and lookup.is_set(outbox)
        assert not lookup.is_set(Timer(own.arn, own.kind, own.op_id, 4_000))  # moved since
        assert not lookup.is_set(Timer(arn("nobody"), TimerKind.INVOKE, "", 1))
        _commit(store, parent.arn, clear_timers=[(TimerKind.WAIT, "w")])
        assert not lookup.is_set(own)


def _create(store: ExecutionStore, name: str) -> Execution:
    ex = Execution(
        arn=arn(name),
        tenant="123456789012",
        function_name="f",
        version="1",
        name=name,
        exec_id=f"id-{name}",
        status=ExecutionStatus.RUNNING,
        input_payload="{}",
        input_hash="h",
        start_ms=1_000,
        execution_timeout_s=3600,
        retention_days=1,
        change_seq=1,
        next_event_id=1,
    )
    store.create(Commit(execution=ex))
    return ex


def _commit(store: ExecutionStore, execution_arn: str, **changes: Any) -> None:
    store.commit(Commit(execution=store.load(execution_arn).execution, **changes))


def test_a_consumer_that_died_holding_a_timer_leaves_it_to_the_next_at_its_start(
    s: SqsHarness,
) -> None:
    timer = Timer(arn("held"), TimerKind.WAIT, "w", s.clock.now_ms())
    s.set(timer)
    # The dead consumer received it and never settled it: invisible for the timeout.
    held = s.sqs.receive_message(QueueUrl=s.url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(held) == 1
    s.clock.advance(10_000)
    s.tick()  # the sweep's overdue net waits a whole interval
    s.settle()
    assert s.engine.fired == []
    assert resend_due(s.table, s.dispatcher, s.clock.now_ms()) == 1
    s.settle()
    assert s.engine.fired == [timer]
