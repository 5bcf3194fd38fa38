"""The firing decision (`plan_tick`) and the cron calendar (croniter), on a fake clock.

No test sleeps: every 'minute later' is a number added to the time the plan is asked at.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from treadle.adapters.cron import CronCalendar
from treadle.domain.errors import InvalidParameter
from treadle.domain.schedules import (
    MAX_CATCH_UP,
    Action,
    CatchUp,
    Overlap,
    Schedule,
    fire_name,
    plan_tick,
)

CAL = CronCalendar()
MIN = 60_000
HOUR = 60 * MIN


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


T0 = ms("2026-12-04T03:00:00")


def schedule(cron: str = "* * * * *", next_fire: int = T0, **kw: Any) -> Schedule:
    fields: dict[str, Any] = {"created_ms": T0 - HOUR, "timezone": "UTC"}
    return Schedule(
        tenant="1" * 12, name="s", cron=cron, function_name="f", next_fire_ms=next_fire,
        **{**fields, **kw},
    )  # fmt: skip


def actions(steps: Any) -> list[tuple[int, Action]]:
    return [(s.fire_ms, s.action) for s in steps]


def test_an_every_minute_schedule_fires_once_a_minute_and_moves_to_the_next() -> None:
    tick = plan_tick(schedule(), T0 + 5_000, CAL, previous_open=False)
    assert actions(tick.steps) == [(T0, Action.START)]
    assert tick.next_fire_ms == T0 + MIN


def test_a_schedule_not_yet_due_does_nothing() -> None:
    tick = plan_tick(schedule(), T0 - 1, CAL, previous_open=False)
    assert tick.steps == [] and tick.next_fire_ms == T0


def test_a_late_tick_within_the_grace_fires_each_fire_time_it_finds() -> None:
    tick = plan_tick(schedule(overlap=Overlap.ALLOW), T0 + 2 * MIN, CAL, previous_open=False)
    assert actions(tick.steps) == [(t, Action.START) for t in (T0, T0 + MIN, T0 + 2 * MIN)]


@pytest.mark.parametrize(
    ("catch_up", "started"),
    [
        (CatchUp.NONE, []),
        (CatchUp.LAST, [T0 + 2 * HOUR]),
        (CatchUp.ALL, [T0, T0 + HOUR, T0 + 2 * HOUR]),
    ],
)
def test_missed_fire_times_run_as_catch_up_says(catch_up: CatchUp, started: list[int]) -> None:
    # Hourly; the platform was down from before 03:00 until 05:30: three missed.
    s = schedule("0 * * * *", catch_up=catch_up, overlap=Overlap.ALLOW)
    tick = plan_tick(s, T0 + 2 * HOUR + 30 * MIN, CAL, previous_open=False)
    assert [t for t, a in actions(tick.steps) if a is Action.START] == started
    missed = [step for step in tick.steps if step.action is Action.MISS]
    assert len(missed) == (0 if catch_up is CatchUp.ALL else 1)
    assert tick.next_fire_ms == T0 + 3 * HOUR


def test_catch_up_all_is_capped_at_the_most_recent_fire_times() -> None:
    s = schedule(catch_up=CatchUp.ALL, overlap=Overlap.ALLOW)
    now = T0 + 24 * HOUR  # a day of minutes missed
    tick = plan_tick(s, now, CAL, previous_open=False)
    started = [t for t, a in actions(tick.steps) if a is Action.START]
    assert len(started) == MAX_CATCH_UP and started[-1] == now
    (missed,) = [step for step in tick.steps if step.action is Action.MISS]
    assert missed.reason is not None and missed.reason.startswith("more than")


def test_overlap_skip_skips_while_the_previous_execution_runs() -> None:
    tick = plan_tick(schedule(), T0, CAL, previous_open=True)
    assert actions(tick.steps) == [(T0, Action.SKIP)]


def test_overlap_skip_lets_catch_up_start_only_the_first() -> None:
    s = schedule("0 * * * *", catch_up=CatchUp.ALL)
    tick = plan_tick(s, T0 + 2 * HOUR + 30 * MIN, CAL, previous_open=False)
    assert [a for _, a in actions(tick.steps)] == [Action.START, Action.SKIP, Action.SKIP]


def test_overlap_allow_starts_while_the_previous_execution_runs() -> None:
    tick = plan_tick(schedule(overlap=Overlap.ALLOW), T0, CAL, previous_open=True)
    assert actions(tick.steps) == [(T0, Action.START)]


def test_buffer_one_keeps_one_firing_and_skips_the_others() -> None:
    s = schedule(overlap=Overlap.BUFFER_ONE)
    first = plan_tick(s, T0, CAL, previous_open=True)
    assert actions(first.steps) == [(T0, Action.BUFFER)] and first.buffered_fire_ms == T0
    s = s.model_copy(update={"buffered_fire_ms": T0, "next_fire_ms": first.next_fire_ms})
    second = plan_tick(s, T0 + MIN, CAL, previous_open=True)
    assert actions(second.steps) == [(T0 + MIN, Action.SKIP)]
    assert second.buffered_fire_ms == T0


def test_a_buffered_firing_starts_first_once_the_previous_has_closed() -> None:
    s = schedule(overlap=Overlap.BUFFER_ONE, buffered_fire_ms=T0 - MIN, next_fire=T0)
    tick = plan_tick(s, T0, CAL, previous_open=False)
    # The buffered one starts; the one due now meets it running and is buffered in turn.
    assert actions(tick.steps) == [(T0 - MIN, Action.START), (T0, Action.BUFFER)]
    assert tick.buffered_fire_ms == T0


def test_a_buffered_firing_waits_while_the_previous_runs() -> None:
    s = schedule(overlap=Overlap.BUFFER_ONE, buffered_fire_ms=T0 - MIN, next_fire=T0 + MIN)
    tick = plan_tick(s, T0, CAL, previous_open=True)
    assert tick.steps == [] and tick.buffered_fire_ms == T0 - MIN


def test_execution_names_carry_the_fire_time_in_utc_and_fit_the_name_pattern() -> None:
    assert fire_name("nightly", ms("2026-12-04T03:00:00")) == "nightly-20261204T0300Z"
    manual = fire_name("n" * 47, ms("2026-12-04T03:05:12"), manual=True)
    assert manual == "n" * 47 + "-20261204T030512Z" and len(manual) == 64


# -- the calendar ------------------------------------------------------------------------


def test_a_zoned_cron_fires_at_local_time_across_daylight_saving() -> None:
    # 02:30 in Paris: UTC+1 in winter, UTC+2 in summer; on 29 March 2026 02:30 does not
    # exist (clocks jump from 02:00 to 03:00) and the firing comes at 03:00 local.
    before = ms("2026-03-27T12:00:00")
    times = CAL.fire_times("30 2 * * *", "Europe/Paris", before, ms("2026-03-31T00:00:00"), 10)
    assert sorted(times) == [
        ms("2026-03-28T01:30:00"),
        ms("2026-03-29T01:00:00"),
        ms("2026-03-30T00:30:00"),
    ]


def test_the_next_fire_time_is_strictly_after_the_given_instant() -> None:
    assert CAL.next_after("0 3 * * *", "UTC", T0) == T0 + 24 * HOUR
    assert CAL.next_after("0 3 * * *", "UTC", T0 - 1) == T0


@pytest.mark.parametrize(
    ("cron", "zone", "says"),
    [
        ("61 * * * *", "UTC", "Invalid cron expression '61 * * * *'"),
        ("* * * *", "UTC", "it needs 5 fields"),
        ("0 * * * * *", "UTC", "it needs 5 fields"),
        ("@reboot", "UTC", "the nicknames are"),
        ("0 0 31 2 *", "UTC", "never fires"),
        ("0 3 * * *", "Mars/Olympus", "Unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_cron_or_zone_is_refused_with_the_reason(cron: str, zone: str, says: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        CAL.check(cron, zone)
    assert says in err.value.message


def test_nicknames_are_accepted() -> None:
    CAL.check("@daily", "UTC")
    assert CAL.next_after("@hourly", "UTC", T0) == T0 + HOUR
