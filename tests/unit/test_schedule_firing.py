"""Firing schedules through the engine, on a manual clock and both stores.

A schedule's firings start real executions in the engine harness (SQLite, or DynamoDB
under moto); the clock is moved by hand, so a `* * * * *` schedule fires without
anyone waiting a minute.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.engine_harness import Harness, harness_on
from support.fakes import NoQuotas
from treadle.adapters.aws.dynamodb_schedules import DynamoScheduleStore
from treadle.adapters.cron import CronCalendar
from treadle.adapters.sqlite.schedules import SqliteScheduleStore
from treadle.app.schedule_firing import ScheduleFirer
from treadle.app.schedules import NewSchedule, ScheduleService
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    InvalidParameter,
    NotFound,
)
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import ExecutionQuery
from treadle.domain.schedules import CatchUp, Outcome, Overlap, Schedule, ScheduleStore
from treadle.platform.schedule_loop import ScheduleLoop

TENANT = "123456789012"
MIN = 60_000
HOUR = 60 * MIN
T0 = int(datetime(2026, 12, 4, 3, 0, tzinfo=UTC).timestamp() * 1000)


@dataclass
class World:
    h: Harness
    store: ScheduleStore
    firer: ScheduleFirer
    service: ScheduleService

    def another_firer(self, store: ScheduleStore | None = None) -> ScheduleFirer:
        """A second scheduler (another process) over the same data."""
        return _firer(self.h, store or self.store)

    def executions(self) -> list[Execution]:
        found, _ = self.h.store.list_executions(TENANT, "f", _query())
        return sorted(found, key=lambda ex: ex.name)

    def at(self, ms: int) -> None:
        self.h.clock.advance(ms - self.h.clock.now_ms())


def _query() -> ExecutionQuery:
    return ExecutionQuery(limit=1000)


def _firer(h: Harness, store: ScheduleStore) -> ScheduleFirer:
    return ScheduleFirer(
        store=store, calendar=CronCalendar(), engine=h.engine, functions=h.functions,
        aliases=None, quotas=NoQuotas(), clock=h.clock, recheck_ms=MIN,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "dynamodb"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with harness_on(request.param, tmp_path, monkeypatch, "sched-test") as h:
        h.clock.advance(T0 - 30_000 - h.clock.now_ms())  # 02:59:30
        store: ScheduleStore
        if request.param == "sqlite":
            store = SqliteScheduleStore(tmp_path / "schedules.db")
        else:
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            store = DynamoScheduleStore(ddb, "sched-test")
        firer = _firer(h, store)
        yield World(h, store, firer, ScheduleService(firer))


def _new(name: str = "every", cron: str = "* * * * *", **kw: Any) -> NewSchedule:
    return NewSchedule(name=name, cron=cron, function_name="f", input={"n": 1}, **kw)


def test_a_due_schedule_starts_one_execution_named_after_its_fire_time(world: World) -> None:
    world.service.create(TENANT, _new())
    assert world.firer.tick().started == 0  # 02:59:30: not yet
    world.at(T0 + 1_000)
    report = world.firer.tick()
    (ex,) = world.executions()
    assert report.started == 1 and ex.name == "every-20261204T0300Z"
    assert ex.input_payload == '{"n":1}'
    s = world.service.get(TENANT, "every")
    assert s.last_fire_ms == T0 and s.last_execution_arn == ex.arn
    assert s.next_fire_ms == T0 + MIN and s.recent[-1].outcome is Outcome.STARTED


def test_a_second_look_at_the_same_instant_starts_nothing(world: World) -> None:
    world.service.create(TENANT, _new())
    world.at(T0)
    world.firer.tick()
    assert world.firer.tick().started == 0
    assert len(world.executions()) == 1


def test_two_schedulers_firing_the_same_instant_start_one_execution(world: World) -> None:
    world.service.create(TENANT, _new(overlap=Overlap.ALLOW))
    world.at(T0)
    other = world.another_firer()
    results: list[int] = []

    def fire(firer: ScheduleFirer) -> None:
        results.append(len(firer.fire_due(TENANT, "every", T0)))

    threads = [threading.Thread(target=fire, args=(f,)) for f in (world.firer, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(world.executions()) == 1
    s = world.service.get(TENANT, "every")
    assert [f.outcome for f in s.recent] == [Outcome.STARTED]  # recorded once


class CrashBeforeSave:
    """A store whose process dies after the starts, before the schedule is advanced."""

    def __init__(self, inner: ScheduleStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def replace(self, schedule: Schedule) -> Schedule:
        raise KeyboardInterrupt("kill -9")


def test_a_restart_between_start_and_advance_fires_the_instant_once(world: World) -> None:
    world.service.create(TENANT, _new())
    world.at(T0 + 10_000)
    dying = world.another_firer(CrashBeforeSave(world.store))  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        dying.fire_due(TENANT, "every", world.h.clock.now_ms())
    (started,) = world.executions()
    # The restarted process finds the same fire time due and the execution started.
    report = world.another_firer().tick()
    (ex,) = world.executions()
    assert ex.arn == started.arn and report.started == 1
    assert world.service.get(TENANT, "every").last_execution_arn == ex.arn


def test_overlap_skip_records_a_skipped_firing_while_the_previous_runs(world: World) -> None:
    world.service.create(TENANT, _new())
    world.at(T0)
    world.firer.tick()
    world.at(T0 + MIN)
    world.firer.tick()
    s = world.service.get(TENANT, "every")
    assert [f.outcome for f in s.recent] == [Outcome.STARTED, Outcome.SKIPPED]
    assert s.recent[-1].reason == "the previous execution is still running"
    (first,) = world.executions()
    world.h.engine.stop(first.arn, None)
    world.at(T0 + 2 * MIN)
    world.firer.tick()
    assert [ex.name[-5:] for ex in world.executions()] == ["0300Z", "0302Z"]


def test_buffer_one_starts_the_buffered_firing_when_the_previous_closes(world: World) -> None:
    world.service.create(TENANT, _new(overlap=Overlap.BUFFER_ONE))
    world.at(T0)
    world.firer.tick()
    world.at(T0 + MIN)
    world.firer.tick()
    s = world.service.get(TENANT, "every")
    assert s.buffered_fire_ms == T0 + MIN and s.due_ms == T0 + 2 * MIN
    (first,) = world.executions()
    world.h.engine.stop(first.arn, None)
    world.at(T0 + MIN + 30_000)  # the recheck comes before the next fire time
    world.firer.tick()
    assert world.firer.tick().started == 0  # not due until the recheck
    world.at(T0 + 2 * MIN)
    world.firer.tick()
    names = [ex.name[-5:] for ex in world.executions()]
    # The buffered 03:01 started (under its own fire time); 03:02 met it running.
    assert names == ["0300Z", "0301Z"]
    assert world.service.get(TENANT, "every").buffered_fire_ms == T0 + 2 * MIN


@pytest.mark.parametrize(
    ("catch_up", "hours"),
    [(CatchUp.NONE, []), (CatchUp.LAST, ["05"]), (CatchUp.ALL, ["03", "04", "05"])],
)
def test_firings_missed_while_down_run_as_catch_up_says(
    world: World, catch_up: CatchUp, hours: list[str]
) -> None:
    world.service.create(
        TENANT, _new("hourly", "0 * * * *", catch_up=catch_up, overlap=Overlap.ALLOW)
    )
    world.at(T0 + 2 * HOUR + 30 * MIN)  # down from 02:59:30 to 05:30
    world.firer.tick()
    assert [ex.name[-5:-3] for ex in world.executions()] == hours
    s = world.service.get(TENANT, "hourly")
    assert s.next_fire_ms == T0 + 3 * HOUR
    if catch_up is not CatchUp.ALL:
        assert s.recent[0].outcome is Outcome.MISSED


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(world: World) -> None:
    world.service.create(TENANT, _new())
    paused = world.service.pause(TENANT, "every")
    assert paused.paused and paused.next_fire_ms is None and paused.due_ms is None
    world.at(T0 + 10 * MIN + 5_000)
    world.firer.tick()
    assert world.executions() == []
    resumed = world.service.resume(TENANT, "every")
    assert resumed.next_fire_ms == T0 + 11 * MIN  # the paused minutes are not caught up
    world.firer.tick()
    assert world.executions() == []


def test_trigger_now_starts_an_execution_named_to_the_second(world: World) -> None:
    world.service.create(TENANT, _new(paused=True))
    world.at(T0 + 12_345)
    firing = world.service.trigger(TENANT, "every")
    (ex,) = world.executions()
    assert firing.outcome is Outcome.STARTED and firing.manual
    assert ex.name == "every-20261204T030012Z" and firing.execution_arn == ex.arn
    again = world.service.trigger(TENANT, "every")  # the same second, the previous runs
    assert again.outcome is Outcome.SKIPPED and len(world.executions()) == 1


def test_a_firing_of_a_deleted_function_is_recorded_as_failed_and_the_schedule_moves_on(
    world: World,
) -> None:
    world.service.create(TENANT, _new())
    world.h.functions.delete(TENANT, "f")
    world.at(T0)
    world.firer.tick()
    s = world.service.get(TENANT, "every")
    assert s.recent[-1].outcome is Outcome.FAILED and "f" in (s.recent[-1].reason or "")
    assert s.next_fire_ms == T0 + MIN


def test_creating_checks_the_name_cron_zone_and_function(world: World) -> None:
    svc = world.service
    with pytest.raises(InvalidParameter, match="needs 5 fields"):
        svc.create(TENANT, _new(cron="* * *"))
    with pytest.raises(InvalidParameter, match="Unknown time zone"):
        svc.create(TENANT, _new(timezone="Nowhere/Land"))
    with pytest.raises(NotFound, match="Function not found"):
        svc.create(TENANT, NewSchedule(name="x", cron="* * * * *", function_name="nope"))
    with pytest.raises(InvalidParameter, match="schedule name"):
        svc.create(TENANT, _new(name="n" * 48))
    svc.create(TENANT, _new())
    with pytest.raises(AlreadyExists):
        svc.create(TENANT, _new())


def test_another_tenant_sees_no_schedule(world: World) -> None:
    world.service.create(TENANT, _new())
    with pytest.raises(NotFound):
        world.service.get("210987654321", "every")
    with pytest.raises(NotFound):
        world.service.trigger("210987654321", "every")
    with pytest.raises(NotFound):
        world.service.delete("210987654321", "every")
    assert world.service.list("210987654321", None, None) == ([], None)
    with pytest.raises(NotFound):  # no schedule can have it: never a store key
        world.service.pause(TENANT, "x" * 2000)


def test_a_compare_and_swap_that_keeps_losing_gives_up(world: World) -> None:
    world.service.create(TENANT, _new())

    class AlwaysLoses(CrashBeforeSave):
        def replace(self, schedule: Schedule) -> Schedule:
            raise ConcurrentModification("lost")

    firer = world.another_firer(AlwaysLoses(world.store))  # type: ignore[arg-type]
    world.at(T0)
    with pytest.raises(ConcurrentModification):
        firer.fire_due(TENANT, "every", T0)
    assert len(world.executions()) == 1  # every try found the same execution


def test_the_embedded_scheduler_thread_fires_when_woken_on_the_moved_clock(
    world: World,
) -> None:
    loop = ScheduleLoop(world.firer, world.h.clock)
    loop.start()
    try:
        world.service.create(TENANT, _new())
        world.at(T0 + 1_000)
        world.firer.changed()  # what a create, resume or trigger does
        done = threading.Event()
        for _ in range(200):
            if world.executions():
                done.set()
                break
            done.wait(0.05)
            world.firer.changed()
        assert [ex.name for ex in world.executions()] == ["every-20261204T0300Z"]
    finally:
        loop.stop()
    assert world.executions()[0].status is ExecutionStatus.RUNNING
