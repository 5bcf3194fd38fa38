"""Every execution status change the engine makes is published, exactly once, by the
commit that makes it; checkpoints that change no status publish nothing. On both
execution stores (SQLite, and DynamoDB on moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.engine_harness import REGION, Harness, harness_on, step
from treadle.adapters.aws.dynamodb_notifications import DynamoStatusEvents
from treadle.adapters.sqlite.notifications import SqliteStatusEvents
from treadle.domain.models import ErrorObject
from treadle.domain.notification_ports import StatusEventStore
from treadle.domain.notifications import StatusEvent

T = "123456789012"
FAR = 2**41  # a reader long after every commit


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, StatusEventStore]]:
    with harness_on(request.param, tmp_path, monkeypatch, "status-events") as harness:
        events: StatusEventStore = (
            SqliteStatusEvents(harness.db)
            if request.param == "sqlite"
            else DynamoStatusEvents(boto3.client("dynamodb", region_name=REGION), "status-events")
        )
        yield harness, events


def changes(events: StatusEventStore, arn: str) -> list[tuple[str | None, str]]:
    got, _ = events.read(T, None, 100, FAR)
    return [(e.previous_status, e.status) for e in got if e.arn == arn]


def pending_wait(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
    wait = {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 7200}}
    hh.checkpoint(env, [wait])
    return {"Status": "PENDING"}


def test_a_run_through_steps_publishes_its_start_and_its_success_only(
    h: tuple[Harness, StatusEventStore],
) -> None:
    harness, events = h

    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        token = env["CheckpointToken"]
        for i in range(3):  # checkpoints: no status change, no event
            updates = [step(f"s{i}", "START"), step(f"s{i}", "SUCCEED", Payload="1")]
            token = hh.checkpoint(env, updates, token=token).CheckpointToken
        return {"Status": "SUCCEEDED", "Result": '"done"'}

    harness.runtime.scripts.append(script)
    ex, _ = harness.engine.start(harness.fn, "ok", None)
    harness.pump()
    assert changes(events, ex.arn) == [(None, "RUNNING"), ("RUNNING", "SUCCEEDED")]


def test_a_failure_is_published(h: tuple[Harness, StatusEventStore]) -> None:
    harness, events = h
    failed = ErrorObject(ErrorType="Boom", ErrorMessage="no").wire()
    harness.runtime.scripts.append(lambda env, hh: {"Status": "FAILED", "Error": failed})
    ex, _ = harness.engine.start(harness.fn, "bad", None)
    harness.pump()
    assert changes(events, ex.arn) == [(None, "RUNNING"), ("RUNNING", "FAILED")]
    closed = events.read(T, None, 100, FAR)[0][-1]
    assert closed.end_ms is not None and closed.end_ms >= closed.start_ms


def test_pause_resume_and_stop_are_each_published(h: tuple[Harness, StatusEventStore]) -> None:
    harness, events = h
    harness.runtime.scripts.append(pending_wait)
    ex, _ = harness.engine.start(harness.fn, "ctl", None)
    harness.pump()
    harness.engine.pause(ex.arn, "maintenance", False)
    harness.engine.resume(ex.arn, None)
    harness.engine.stop(ex.arn, None)
    assert changes(events, ex.arn) == [
        (None, "RUNNING"),
        ("RUNNING", "PAUSED"),
        ("PAUSED", "RUNNING"),
        ("RUNNING", "STOPPED"),
    ]
    times = [e.time_ms for e in events.read(T, None, 100, FAR)[0]]
    assert times == sorted(times) and len(set(times)) == len(
        times
    )  # one clock instant: still ordered


def test_a_timeout_is_published(h: tuple[Harness, StatusEventStore]) -> None:
    harness, events = h
    harness.runtime.scripts.append(pending_wait)
    ex, _ = harness.engine.start(harness.fn, "slow", None)
    harness.pump()
    harness.clock.advance(3600 * 1000)
    harness.pump()
    assert changes(events, ex.arn) == [(None, "RUNNING"), ("RUNNING", "TIMED_OUT")]


def test_a_start_repeated_under_its_name_publishes_nothing_more(
    h: tuple[Harness, StatusEventStore],
) -> None:
    harness, events = h
    ex, _ = harness.engine.start(harness.fn, "once", "{}")
    harness.engine.start(harness.fn, "once", "{}")
    assert changes(events, ex.arn) == [(None, "RUNNING")]


def test_listeners_hear_each_committed_change_once_and_a_failing_one_changes_nothing(
    h: tuple[Harness, StatusEventStore],
) -> None:
    harness, events = h
    heard: list[tuple[str | None, str]] = []

    def broken(_event: StatusEvent) -> None:
        raise RuntimeError("an observer's bug")

    harness.engine.status_listeners = (
        broken,
        lambda e: heard.append((e.previous_status, e.status)),
    )
    harness.runtime.scripts.append(pending_wait)
    ex, _ = harness.engine.start(harness.fn, "heard", None)
    harness.pump()
    harness.engine.stop(ex.arn, None)
    assert heard == changes(events, ex.arn) == [(None, "RUNNING"), ("RUNNING", "STOPPED")]
