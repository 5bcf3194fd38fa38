"""Queued starts at the engine, on both stores (SQLite, DynamoDB under moto): a queued
start is written QUEUED with nothing scheduled, a promotion makes it RUNNING with its
invocation and timeout once, and a queued execution can be stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, harness_on
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import TimerKind

NAME = "queue-test"
HOUR_MS = 3_600_000


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    with harness_on(request.param, tmp_path, monkeypatch, NAME) as harness:
        yield harness


def succeed(env: dict[str, Any], h: Harness) -> dict[str, Any]:
    return {"Status": "SUCCEEDED", "Result": "1"}


def test_a_queued_start_is_recorded_but_never_invoked_until_promoted(h: Harness) -> None:
    ex, created = h.engine.start(h.fn, "later", '{"a": 1}', queued=True)
    assert created and ex.status is ExecutionStatus.QUEUED
    assert h.store.get(ex.arn).status is ExecutionStatus.QUEUED
    assert h.history(ex.arn) == ["ExecutionStarted"]
    h.clock.advance(10 * HOUR_MS)  # past its timeout, were it counting
    assert h.store.due_timers(h.clock.now_ms(), 10) == []
    h.runtime.scripts.append(succeed)
    assert h.engine.promote(ex.arn) is True
    timers = h.store.due_timers(h.clock.now_ms() + HOUR_MS, 10)
    assert {t.kind for t in timers} == {TimerKind.INVOKE, TimerKind.EXECUTION_TIMEOUT}
    timeout = next(t for t in timers if t.kind is TimerKind.EXECUTION_TIMEOUT)
    assert timeout.due_ms == h.clock.now_ms() + HOUR_MS  # counted from the promotion
    h.pump()
    assert h.store.get(ex.arn).status is ExecutionStatus.SUCCEEDED


def test_a_promotion_happens_once(h: Harness) -> None:
    ex, _ = h.engine.start(h.fn, None, None, queued=True)
    assert h.engine.promote(ex.arn) is True
    assert h.engine.promote(ex.arn) is False
    assert h.store.get(ex.arn).status is ExecutionStatus.RUNNING


def test_a_queued_execution_stops_without_being_invoked_and_is_not_promoted(
    h: Harness,
) -> None:
    ex, _ = h.engine.start(h.fn, "gone", None, queued=True)
    h.engine.stop(ex.arn, None)
    assert h.store.get(ex.arn).status is ExecutionStatus.STOPPED
    assert h.engine.promote(ex.arn) is False
    assert h.runtime.scripts == [] and h.store.get(ex.arn).status is ExecutionStatus.STOPPED


def test_a_queued_start_is_idempotent_on_its_name(h: Harness) -> None:
    first, _ = h.engine.start(h.fn, "same", '{"a": 1}', queued=True)
    again, created = h.engine.start(h.fn, "same", '{"a": 1}', queued=True)
    assert not created and again.arn == first.arn and again.status is ExecutionStatus.QUEUED
