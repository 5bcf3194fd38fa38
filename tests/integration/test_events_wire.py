"""Events by type and sleep_until on the wire: tenant code uses `treadle_workflows`
inside the sandbox; senders call `/v1` (HTTP Basic, as curl) and boto3 reads the
executions back. Events sent before, during and after a wait; another tenant's
sends look exactly like a missing execution."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1
from support.workflows import EVENTED


@pytest.fixture(scope="module")
def lam(server: ServerProcess) -> Any:
    lam = client(server)
    deploy(lam, "evented", {"handler.py": EVENTED})
    return lam


def start(lam: Any, payload: dict[str, Any], name: str | None = None) -> str:
    extra = {"DurableExecutionName": name} if name else {}
    resp = lam.invoke(
        FunctionName="evented", InvocationType="Event", Payload=json.dumps(payload), **extra
    )
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def send(
    server: ServerProcess,
    arn: str,
    event_type: str,
    payload: Any,
    credentials: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    path = f"/v1/executions/{urllib.parse.quote(arn, safe='')}/events"
    body = {"type": event_type, "payload": payload}
    return v1(server, "POST", path, body, credentials=credentials)


def history(lam: Any, arn: str) -> list[dict[str, Any]]:
    return lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)["Events"]


def wait_for_history(lam: Any, arn: str, event_type: str, count: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(e["EventType"] == event_type for e in history(lam, arn)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} x {event_type} never appeared in {arn}")


def result_of(lam: Any, arn: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] != "RUNNING":
            assert ex["Status"] == "SUCCEEDED", ex
            return json.loads(ex["Result"])
        time.sleep(0.05)
    raise AssertionError(f"{arn} is still running")


def test_an_event_sent_before_its_wait_is_buffered_then_taken(
    server: ServerProcess, lam: Any
) -> None:
    arn = start(lam, {"mode": "gate"})
    wait_for_history(lam, arn, "CallbackStarted")  # waiting for "go", not "approval"
    assert send(server, arn, "approval", {"ok": True}) == (
        200,
        {"executionArn": arn, "outcome": "buffered"},
    )
    assert send(server, arn, "go", None)[1]["outcome"] == "delivered"
    assert result_of(lam, arn) == {"ok": True}
    types = [e["EventType"] for e in history(lam, arn)]
    assert types.count("CallbackSucceeded") == 2


def test_an_event_sent_during_the_wait_completes_it(server: ServerProcess, lam: Any) -> None:
    arn = start(lam, {"mode": "approval"}, name="during-1")
    wait_for_history(lam, arn, "CallbackStarted")
    status, body = v1(
        server,
        "POST",
        "/v1/functions/evented/executions/during-1/events",
        {"type": "approval", "payload": "yes"},
    )
    assert (status, body["outcome"]) == (200, "delivered")
    assert result_of(lam, arn) == "yes"


def test_a_stream_of_events_is_taken_in_order_exactly_once(server: ServerProcess, lam: Any) -> None:
    arn = start(lam, {"mode": "stream", "n": 5})
    for i in range(5):
        assert send(server, arn, "item", i)[0] == 200
    assert result_of(lam, arn) == [0, 1, 2, 3, 4]


def test_an_event_after_the_execution_closed_is_a_conflict(server: ServerProcess, lam: Any) -> None:
    arn = start(lam, {"mode": "approval"})
    wait_for_history(lam, arn, "CallbackStarted")
    send(server, arn, "approval", 1)
    result_of(lam, arn)
    status, body = send(server, arn, "approval", 2)
    assert status == 409 and body["error"]["code"] == "ResourceConflictException"
    assert "SUCCEEDED" in body["error"]["message"]


def test_bad_events_get_precise_errors(server: ServerProcess, lam: Any) -> None:
    arn = start(lam, {"mode": "approval"})
    status, body = send(server, arn, "has space", 1)
    assert status == 400 and "type" in body["error"]["message"]
    status, body = v1(server, "POST", "/v1/executions/not-an-arn/events", {"type": "a"})
    assert status == 400 and "Invalid durable execution ARN" in body["error"]["message"]
    status, body = v1(
        server, "POST", "/v1/functions/evented/executions/nobody/events", {"type": "a"}
    )
    assert status == 404
    status, body = send(server, arn, "a", "x" * 300_000)
    assert status == 400
    lam.stop_durable_execution(DurableExecutionArn=arn)


@pytest.fixture(scope="module")
def tenant_b(server: ServerProcess) -> Iterator[tuple[str, str]]:
    admin = server.credentials("treadle-admin")
    status, body = v1(server, "POST", "/v1/tenants", {"name": "events-b"}, credentials=admin)
    assert status == 201
    yield body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"]


def test_another_tenant_cannot_send_events_to_an_execution(
    server: ServerProcess, lam: Any, tenant_b: tuple[str, str]
) -> None:
    arn = start(lam, {"mode": "approval"}, name="victim")
    wait_for_history(lam, arn, "CallbackStarted")
    status, body = send(server, arn, "approval", "forged", credentials=tenant_b)
    assert status == 404 and body["error"]["code"] == "ResourceNotFoundException"
    # By name, B's own function namespace is searched: A's execution is not in it.
    status, _ = v1(
        server,
        "POST",
        "/v1/functions/evented/executions/victim/events",
        {"type": "approval", "payload": "forged"},
        credentials=tenant_b,
    )
    assert status == 404
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    assert send(server, arn, "approval", "real")[1]["outcome"] == "delivered"
    assert result_of(lam, arn) == "real"


def test_sleep_until_waits_for_the_instant_computed_once(lam: Any) -> None:
    until = time.time() + 3
    arn = start(lam, {"mode": "sleep", "until": until})
    assert result_of(lam, arn) == "woke"
    events = history(lam, arn)
    step = next(e for e in events if e["EventType"] == "StepSucceeded")
    seconds = json.loads(step["StepSucceededDetails"]["Result"]["Payload"])
    assert 1 <= seconds <= 3
    wait = next(e for e in events if e["EventType"] == "WaitStarted")
    assert wait["WaitStartedDetails"]["Duration"] == seconds
    # Never earlier than asked: the wait's scheduled end is at or after the instant.
    assert wait["WaitStartedDetails"]["ScheduledEndTimestamp"].timestamp() >= int(until)
    ended = next(e for e in events if e["EventType"] == "WaitSucceeded")
    assert ended["EventTimestamp"].timestamp() >= until - 1
