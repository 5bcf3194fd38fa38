"""Schedules on the wire, through a real `treadle dev`: `/v1/schedules` over HTTP Basic
(as curl sends it), the execution a trigger starts read back with boto3, and another
tenant's calls answered exactly as for a schedule that does not exist.

The cron firing itself is tested on a manual clock (`tests/unit/test_schedule_firing.py`):
nothing here waits for a cron minute.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, new_tenant, v1

ECHO = """
from aws_durable_execution_sdk_python import durable_execution


@durable_execution
def handler(event, context):
    return event
"""
S = "/v1/schedules"


@pytest.fixture(scope="module")
def lam(server: ServerProcess) -> Any:
    return deploy_all(client(server))


def deploy_all(lam: Any) -> Any:
    deploy(lam, "echo", {"handler.py": ECHO})
    deploy(lam, "plain", {"handler.py": "def handler(e, c):\n    return e\n"}, durable=False)
    return lam


def final(lam: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex: dict[str, Any] = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] != "RUNNING":
            return ex
        time.sleep(0.05)
    raise AssertionError(f"{arn} is still running")


def test_a_schedule_is_created_triggered_paused_resumed_and_deleted(
    server: ServerProcess, lam: Any
) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "function": "echo",
        "input": {"report": "daily"},
        "overlap": "bufferOne",
        "catchUp": "last",
    }
    status, made = v1(server, "POST", S, body)
    assert status == 201, made
    assert made["paused"] is False and made["overlap"] == "bufferOne"
    next_fire = datetime.fromtimestamp(made["nextFireAt"] / 1000, UTC)
    assert next_fire.minute == 0 and next_fire.hour in (1, 2)  # 03:00 in Paris
    status, listed = v1(server, "GET", S + "?limit=10")
    assert status == 200 and [s["name"] for s in listed["schedules"]] == ["nightly"]

    status, firing = v1(server, "POST", S + "/nightly/trigger")
    assert status == 200 and firing["outcome"] == "started" and firing["manual"], firing
    arn = firing["executionArn"]
    assert "/durable-execution/nightly-" in arn
    ex = final(lam, arn)
    assert ex["Status"] == "SUCCEEDED" and json.loads(ex["Result"]) == {"report": "daily"}

    status, shown = v1(server, "GET", S + "/nightly")
    assert status == 200 and shown["lastExecutionArn"] == arn
    assert [f["outcome"] for f in shown["recentFirings"]] == ["started"]

    status, paused = v1(server, "POST", S + "/nightly/pause")
    assert status == 200 and paused["paused"] is True and paused["nextFireAt"] is None
    status, resumed = v1(server, "POST", S + "/nightly/resume")
    assert status == 200 and resumed["paused"] is False
    assert resumed["nextFireAt"] == made["nextFireAt"]

    status, _ = v1(server, "DELETE", S + "/nightly")
    assert status == 204
    status, gone = v1(server, "GET", S + "/nightly")
    assert status == 404 and gone["error"]["code"] == "ResourceNotFoundException"
    # The execution it started stays.
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "SUCCEEDED"


def test_another_tenant_cannot_see_or_touch_a_schedule(server: ServerProcess, lam: Any) -> None:
    body = {"name": "mine", "cron": "*/5 * * * *", "function": "echo", "paused": True}
    status, made = v1(server, "POST", S, body)
    assert status == 201, made
    _, other = new_tenant(server, "schedule-attacker")
    for method, path in [
        ("GET", S + "/mine"),
        ("POST", S + "/mine/trigger"),
        ("POST", S + "/mine/pause"),
        ("POST", S + "/mine/resume"),
        ("DELETE", S + "/mine"),
    ]:
        status, answer = v1(server, method, path, credentials=other)
        assert status == 404, (method, path, answer)
        assert answer["error"]["message"] == "Schedule mine not found."
    status, listed = v1(server, "GET", S, credentials=other)
    assert status == 200 and listed == {"schedules": [], "nextMarker": None}
    # The same name in the attacker's tenant is its own schedule, of its own function.
    status, answer = v1(server, "POST", S, body, credentials=other)
    assert status == 404 and "Function not found" in answer["error"]["message"]
    status, still = v1(server, "GET", S + "/mine")
    assert status == 200 and still["paused"] is True and still["recentFirings"] == []
    v1(server, "DELETE", S + "/mine")


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"cron": "61 * * * *"}, 400, "Invalid cron expression '61 * * * *'"),
        ({"cron": "0 3 * *"}, 400, "it needs 5 fields"),
        ({"timezone": "Europe/Atlantis"}, 400, "Unknown time zone 'Europe/Atlantis'"),
        ({"function": "nope"}, 404, "Function not found"),
        ({"function": "plain"}, 400, "is not durable"),
        ({"qualifier": "7"}, 404, "Function not found"),
        ({"name": "n" * 48}, 400, "name"),
        ({"overlap": "queue"}, 400, "overlap"),
        ({"catchUp": "some"}, 400, "catchUp"),
        ({"every": "day"}, 400, "every"),
    ],
)
def test_bad_schedules_are_refused_with_a_precise_message(
    server: ServerProcess, lam: Any, change: dict[str, Any], status: int, says: str
) -> None:
    body = {"name": "bad", "cron": "0 3 * * *", "function": "echo", **change}
    got, answer = v1(server, "POST", S, body)
    assert got == status and says in answer["error"]["message"], answer


def test_a_name_taken_is_a_conflict_and_pages_go_on(server: ServerProcess, lam: Any) -> None:
    for name in ("p1", "p2", "p3"):
        body = {"name": name, "cron": "@daily", "function": "echo", "paused": True}
        assert v1(server, "POST", S, body)[0] == 201
    status, again = v1(server, "POST", S, {"name": "p1", "cron": "@daily", "function": "echo"})
    assert status == 409 and again["error"]["code"] == "ResourceConflictException"
    _, first = v1(server, "GET", S + "?limit=2")
    _, second = v1(server, "GET", S + f"?limit=2&marker={first['nextMarker']}")
    names = [s["name"] for s in first["schedules"] + second["schedules"]]
    assert names == ["p1", "p2", "p3"] and second["nextMarker"] is None
    status, bad = v1(server, "GET", S + "?limit=zero")
    assert status == 400 and "limit" in bad["error"]["message"]
    for name in ("p1", "p2", "p3"):
        v1(server, "DELETE", S + "/" + name)
