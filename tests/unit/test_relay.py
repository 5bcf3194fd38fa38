"""The relay: outbox -> webhooks (a real local HTTP receiver verifying Standard Webhooks
signatures) and EventBridge (moto: a rule with an SQS target), on the embedded stores and
a manual clock, so that retries on the schedule need no waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from standardwebhooks.webhooks import Webhook as Verifier

from support.fakes import ManualClock
from treadle.adapters.aws.eventbridge import EventBridgePublisher
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.notifications import SqliteStatusEvents, SqliteWebhookStore
from treadle.adapters.webhooks.http_sender import HttpWebhookSender
from treadle.app.notifications import NotificationService
from treadle.app.relay import Relay
from treadle.app.webhook_urls import RefusedUrl
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.start import new_execution
from treadle.domain.engine.working_set import open_working_set, to_commit
from treadle.domain.models import DurableConfig, Execution, ExecutionStatus
from treadle.domain.notification_ports import EventPublisher
from treadle.domain.notifications import DETAIL_TYPE, MAX_ATTEMPTS, RETRY_SCHEDULE_S
from treadle.domain.ports import FunctionVersion

T = "123456789012"
OTHER = "210987654321"


@dataclass
class Receiver:
    """A webhook endpoint: answers each request with the next status of `answers`."""

    answers: list[int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(answers=[204])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            box.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(box.answer())
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield box
    server.shutdown()
    server.server_close()


@dataclass
class World:
    clock: ManualClock
    executions: SqliteExecutionStore
    service: NotificationService
    relay: Relay
    make_relay: Callable[..., Relay]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = Database(tmp_path / "treadle.db")
    # From now: receivers refuse signatures more than 5 minutes off their own clock.
    clock = ManualClock(int(time.time() * 1000))
    events, hooks = SqliteStatusEvents(db), SqliteWebhookStore(db)

    def make_relay(publishers: tuple[EventPublisher, ...] = (), **kw: Any) -> Relay:
        options = {"allow_private": True, **kw}
        return Relay(events, hooks, HttpWebhookSender(timeout_s=5), clock,
                     publishers=publishers, **options)  # fmt: skip

    service = NotificationService(events, hooks, clock, allow_private=True)
    relay = make_relay()
    yield World(clock, SqliteExecutionStore(db), service, relay, make_relay)
    relay.close()
    db.close()


def _fn(function: str = "f", tenant: str = T) -> FunctionVersion:
    return FunctionVersion(
        tenant=tenant, function_name=function, version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:{tenant}:function:{function}",
        handler="h.handler", durable_config=DurableConfig(ExecutionTimeout=60),
        code_sha256="x", code_size=1, code_key="k", last_modified_ms=0, revision_id="r",
    )  # fmt: skip


def _start(w: World, name: str, function: str = "f", tenant: str = T) -> Execution:
    ex, ws = new_execution(
        _fn(function, tenant), name, f"id-{name}", "{}", now_ms=w.clock.now_ms(),
        config=EngineConfig(), parent=None,
    )  # fmt: skip
    w.executions.create(to_commit(ex, ws, 1.0))
    return ex


def _close(w: World, arn: str, status: ExecutionStatus) -> None:
    ex, ws = open_working_set(w.executions.load(arn), w.clock.now_ms())
    ex.status, ex.end_ms = status, w.clock.now_ms()
    w.executions.commit(to_commit(ex, ws, 1.0))


def test_a_delivery_that_fails_is_retried_on_schedule_and_both_attempts_are_kept(
    world: World, receiver: Receiver
) -> None:
    receiver.answers = [500, 204]
    hook = world.service.create_webhook(T, receiver.url, None, None)
    ex = _start(world, "order-1")
    first = world.relay.run_once()
    assert (first.relayed, first.attempted, first.delivered) == (1, 1, 0)
    world.clock.advance(4_999)
    assert world.relay.run_once().attempted == 0  # not due before its 5 s backoff
    world.clock.advance(1)
    assert world.relay.run_once().delivered == 1
    # Both requests carry the same id and a valid signature over the same body.
    assert len(receiver.requests) == 2
    verifier = Verifier(hook.secret)
    for headers, body in receiver.requests:
        event = verifier.verify(body, headers)
        assert headers["webhook-id"] == event["id"]
    assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]
    event = json.loads(receiver.requests[1][1])
    assert event["detail-type"] == DETAIL_TYPE
    assert event["detail"]["durableExecutionArn"] == ex.arn
    assert event["detail"]["status"] == "RUNNING"
    history = world.service.deliveries(T, hook.id, 10)
    assert [(d.state, [a.status_code for a in d.attempts]) for d in history] == [
        ("DELIVERED", [500, 204])
    ]
    assert history[0].next_attempt_ms is None


def test_a_forged_body_fails_the_signature_check(world: World, receiver: Receiver) -> None:
    hook = world.service.create_webhook(T, receiver.url, None, None)
    _start(world, "order-1")
    world.relay.run_once()
    headers, body = receiver.requests[0]
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Verifier(hook.secret).verify(body.replace(b"RUNNING", b"FAILED"), headers)


def test_a_webhook_gets_only_the_statuses_and_functions_it_asked_for(
    world: World, receiver: Receiver
) -> None:
    world.service.create_webhook(T, receiver.url, ["FAILED"], ["billing"])
    billing, other = _start(world, "b1", "billing"), _start(world, "o1", "other")
    _start(world, "t1", "billing", tenant=OTHER)  # another tenant's: never sent here
    _close(world, billing.arn, ExecutionStatus.FAILED)
    _close(world, other.arn, ExecutionStatus.FAILED)
    world.relay.run_once()
    sent = [json.loads(body)["detail"] for _, body in receiver.requests]
    assert [(d["durableExecutionName"], d["status"]) for d in sent] == [("b1", "FAILED")]
    assert sent[0]["previousStatus"] == "RUNNING" and "endTimestamp" in sent[0]


def test_an_event_relayed_again_after_a_crash_is_delivered_once(
    world: World, receiver: Receiver
) -> None:
    world.service.create_webhook(T, receiver.url, None, None)
    _start(world, "order-1")

    class Crash(Exception):
        pass

    crashing = world.make_relay()
    original = crashing.events.mark_relayed

    def crash(*_: Any) -> None:
        raise Crash

    crashing.events.mark_relayed = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        crashing.run_once()  # deliveries stored, the outbox not yet cleared
    crashing.events.mark_relayed = original  # type: ignore[method-assign]
    crashing.close()
    report = world.relay.run_once()
    assert report.relayed == 1 and report.delivered == 1
    assert len(receiver.requests) == 1


def test_a_delivery_is_given_up_after_the_last_attempt(world: World, receiver: Receiver) -> None:
    receiver.answers = [503]
    hook = world.service.create_webhook(T, receiver.url, None, None)
    _start(world, "order-1")
    for _ in range(MAX_ATTEMPTS + 2):
        world.relay.run_once()
        world.clock.advance(max(RETRY_SCHEDULE_S) * 1000)
    [delivery] = world.service.deliveries(T, hook.id, 10)
    assert delivery.state == "FAILED"
    assert len(delivery.attempts) == MAX_ATTEMPTS == len(receiver.requests)


def test_a_pending_delivery_of_a_deleted_webhook_is_dropped(
    world: World, receiver: Receiver
) -> None:
    receiver.answers = [500]
    hook = world.service.create_webhook(T, receiver.url, None, None)
    _start(world, "order-1")
    world.relay.run_once()
    world.service.delete_webhook(T, hook.id)
    world.clock.advance(60_000)
    assert world.relay.run_once().attempted == 0
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:8080/",
        "http://user:pw@example.com/",
        "not a url",
    ],
)
def test_a_webhook_url_outside_the_policy_is_refused(world: World, url: str) -> None:
    with pytest.raises(RefusedUrl):
        world.service.create_webhook(T, url, None, None)


def test_without_private_networks_a_name_resolving_to_loopback_is_never_called(
    world: World, receiver: Receiver
) -> None:
    strict = NotificationService(
        world.service.events, world.service.webhooks, world.clock, allow_private=False
    )
    with pytest.raises(RefusedUrl):
        strict.create_webhook(T, receiver.url, None, None)  # a literal loopback address
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    hook = strict.create_webhook(T, by_name, None, None)  # names resolve at delivery
    relay = world.make_relay(allow_private=False)
    _start(world, "order-1")
    relay.run_once()
    relay.close()
    [delivery] = world.service.deliveries(T, hook.id, 10)
    assert receiver.requests == []
    assert delivery.attempts[0].status_code is None
    assert "refused" in (delivery.attempts[0].error or "")


def test_every_status_change_is_put_on_the_event_bus(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EVENTS", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events.create_event_bus(Name="workflows")
        queue = sqs.create_queue(QueueName="status")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        pattern = {"source": ["treadle"], "detail-type": [DETAIL_TYPE]}
        events.put_rule(Name="all", EventBusName="workflows", EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule="all", EventBusName="workflows", Targets=[{"Id": "q", "Arn": queue_arn}]
        )
        relay = world.make_relay((EventBridgePublisher(events, "workflows", "treadle"),))
        ex = _start(world, "order-1")
        _close(world, ex.arn, ExecutionStatus.SUCCEEDED)
        assert relay.run_once().relayed == 2
        relay.close()
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        bodies = [json.loads(m["Body"]) for m in got]
        assert all(b["source"] == "treadle" for b in bodies)
        assert all(b["detail-type"] == DETAIL_TYPE for b in bodies)
        details = sorted((b["detail"] for b in bodies), key=lambda d: d["status"])
        assert [d["status"] for d in details] == ["RUNNING", "SUCCEEDED"]
        assert {d["durableExecutionArn"] for d in details} == {ex.arn}
        assert details[1]["functionArn"].endswith(":function:f:$LATEST")
    assert world.relay.events.unrelayed(10) == []  # the outbox is empty once published


def test_a_held_long_poll_answers_at_once_when_the_service_stops(world: World) -> None:
    """A stopping server must not wait out the stream's 20 s holds: they answer, with no
    events and a cursor to poll again from."""
    answered: list[tuple[list[dict[str, Any]], str]] = []
    held = threading.Thread(
        target=lambda: answered.append(world.service.stream(T, None, 10, 20, latest=True))
    )
    held.start()
    time.sleep(0.3)
    assert answered == []  # held: nothing new
    started = time.monotonic()
    world.service.stop()
    held.join(timeout=5)
    assert answered and answered[0][0] == [] and answered[0][1]
    assert time.monotonic() - started < 2
    events, _ = world.service.stream(T, None, 10, 20, latest=True)  # later ones at once
    assert events == []
