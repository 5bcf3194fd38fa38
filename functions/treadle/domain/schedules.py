"""Schedules: a cron expression that starts executions of a function (`docs/schedules.md`).

The domain holds the record, its two ports and the firing decision (`plan_tick`), a
pure function of the stored schedule, the time, whether the last execution it started
is still open, and a `Calendar` (the cron library, behind a port). Starting the
executions and storing the outcome is the use case's job (`app/schedule_firing.py`).

Exactly-once rests on two facts: a firing's execution is named after its fire time
(`fire_name`), and a start is idempotent on the name; and the schedule's advance is a
compare-and-swap on its `version`, written after the starts. A process that dies
between the two, or two schedulers that fire the same instant, start the same name
again: that returns the execution the first one started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

from pydantic import BaseModel, Field

# The execution name is `<schedule>-<fire time>`, at most 64 characters: the fire time
# takes 15 (`-20261204T0300Z`) or, for a manual trigger, 17 (`-20261204T030512Z`).
NAME_PATTERN: Final = r"^[a-zA-Z0-9_-]{1,47}$"
# The firings shown by GET: the latest ones, oldest first.
RECENT_FIRINGS: Final = 20
# `catchUp: all` runs at most this many missed firings (the most recent ones).
MAX_CATCH_UP: Final = 100
# A fire time found this late is still "on time" (a late tick, not a down platform):
# it fires whatever `catchUp` says. Five sweep intervals on AWS.
MISFIRE_GRACE_MS: Final = 5 * 60_000


class Overlap(StrEnum):
    SKIP = "skip"
    ALLOW = "allow"
    BUFFER_ONE = "bufferOne"


class CatchUp(StrEnum):
    NONE = "none"
    LAST = "last"
    ALL = "all"


class Outcome(StrEnum):
    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"
    MISSED = "missed"  # fire times `catchUp` did not run
    FAILED = "failed"  # the start was refused for good (function deleted, ...)


class Firing(BaseModel):
    fire_ms: int
    outcome: Outcome
    at_ms: int
    execution_arn: str | None = None
    reason: str | None = None
    manual: bool = False


class Schedule(BaseModel):
    tenant: str
    name: str
    cron: str
    timezone: str = "UTC"
    function_name: str
    qualifier: str = "$LATEST"
    input_payload: str | None = None  # JSON text, the handler's event
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.NONE
    paused: bool = False
    created_ms: int
    next_fire_ms: int | None = None  # None only while paused
    last_fire_ms: int | None = None
    last_execution_arn: str | None = None
    buffered_fire_ms: int | None = None
    buffered_manual: bool = False  # the buffered firing was a trigger: its name has seconds
    recent: list[Firing] = Field(default_factory=list)
    # When a scheduler must look at it next: the next fire time, or sooner while a
    # firing is buffered. None while paused. The stores index it.
    due_ms: int | None = None
    version: int = 0  # compare-and-swap: every write expects the version it read


class Calendar(Protocol):
    """Cron arithmetic (a cron library), in the schedule's time zone, DST included."""

    def check(self, cron: str, timezone: str) -> None:
        """Raise InvalidParameter, with the reason, for a bad expression or zone."""

    def next_after(self, cron: str, timezone: str, after_ms: int) -> int | None:
        """The first fire time strictly after `after_ms` (None: it never fires again)."""

    def fire_times(
        self, cron: str, timezone: str, since_ms: int, upto_ms: int, limit: int
    ) -> list[int]:
        """Fire times in [since_ms, upto_ms], newest first, at most `limit`."""


class ScheduleStore(Protocol):
    """Schedules per tenant, and across tenants by due time (what schedulers read)."""

    def create(self, schedule: Schedule) -> None:
        """Raise AlreadyExists if the tenant has a schedule of that name."""

    def get(self, tenant: str, name: str) -> Schedule:
        """Raise NotFound (also for another tenant's)."""

    def list_page(
        self, tenant: str, limit: int, marker: str | None
    ) -> tuple[list[Schedule], str | None]:
        """A page in name order and the marker of the next one (None: the last)."""

    def replace(self, schedule: Schedule) -> Schedule:
        """Write `schedule` if the stored version is still `schedule.version` (else
        ConcurrentModification; NotFound if deleted); the stored copy, version + 1."""

    def delete(self, tenant: str, name: str) -> None:
        """Raise NotFound if there is none."""

    def due(self, now_ms: int, limit: int) -> list[Schedule]:
        """Up to `limit` unpaused schedules with `due_ms <= now_ms`, earliest first."""

    def next_due_ms(self) -> int | None:
        """The earliest `due_ms` of any unpaused schedule."""


def utc_stamp(ms: int, *, seconds: bool) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y%m%dT%H%M%SZ" if seconds else "%Y%m%dT%H%MZ")


def fire_name(schedule: str, fire_ms: int, *, manual: bool = False) -> str:
    """The execution a firing starts: `nightly-20261204T0300Z` (a manual trigger has
    seconds, so it never takes the name of a cron firing)."""
    return f"{schedule}-{utc_stamp(fire_ms, seconds=manual)}"


class Action(StrEnum):
    START = "start"
    SKIP = "skip"
    BUFFER = "buffer"
    MISS = "miss"


@dataclass(frozen=True)
class Step:
    fire_ms: int
    action: Action
    reason: str | None = None
    manual: bool = False


@dataclass
class Tick:
    """What one look at a due schedule decided, in order."""

    steps: list[Step] = field(default_factory=list)
    next_fire_ms: int | None = None
    buffered_fire_ms: int | None = None
    buffered_manual: bool = False


def plan_tick(
    schedule: Schedule,
    now_ms: int,
    calendar: Calendar,
    *,
    previous_open: bool,
    grace_ms: int = MISFIRE_GRACE_MS,
    cap: int = MAX_CATCH_UP,
) -> Tick:
    """The firings of a schedule looked at `now_ms`, oldest first, and its next state.

    A buffered firing goes first, once the previous execution has closed. Then each fire
    time since `next_fire_ms`: those older than `grace_ms` were missed (the platform was
    down) and `catchUp` picks which of them run; each one that runs meets the overlap
    policy, an execution started by this tick counting as open.
    """
    tick = Tick(
        buffered_fire_ms=schedule.buffered_fire_ms, buffered_manual=schedule.buffered_manual
    )
    open_ = previous_open
    if tick.buffered_fire_ms is not None and not open_:
        tick.steps.append(
            Step(tick.buffered_fire_ms, Action.START, manual=schedule.buffered_manual)
        )
        tick.buffered_fire_ms, tick.buffered_manual = None, False
        open_ = True
    nxt = schedule.next_fire_ms
    if nxt is None or nxt > now_ms:
        tick.next_fire_ms = nxt
        return tick
    found = calendar.fire_times(schedule.cron, schedule.timezone, nxt, now_ms, cap + 1)
    found.reverse()  # oldest first
    missed = [t for t in found if now_ms - t > grace_ms]
    on_time = found[len(missed) :]
    # The cap bounds what one tick starts: the on-time fire times count against it.
    keep = _catch_up(schedule.catch_up, missed, cap - len(on_time))
    dropped = [t for t in missed if t not in keep]
    if dropped:
        more = "more than " if len(found) > cap else ""
        why = f"{more}{len(dropped)} fire times missed while the platform was down"
        tick.steps.append(Step(dropped[-1], Action.MISS, f"{why} (catchUp {schedule.catch_up})"))
    for fire_ms in keep + on_time:
        tick.steps.append(overlap_step(schedule.overlap, fire_ms, open_, tick))
        open_ = True
    tick.next_fire_ms = calendar.next_after(schedule.cron, schedule.timezone, now_ms)
    return tick


def _catch_up(policy: CatchUp, missed: list[int], cap: int) -> list[int]:
    if not missed or policy is CatchUp.NONE or cap <= 0:
        return []
    if policy is CatchUp.LAST:
        return missed[-1:]
    return missed[-cap:]


def overlap_step(
    policy: Overlap, fire_ms: int, open_: bool, tick: Tick, *, manual: bool = False
) -> Step:
    """One fire time under the overlap policy, `open_` telling whether an execution of
    the schedule is still running; buffering it sets `tick.buffered_fire_ms`."""
    if not open_ or policy is Overlap.ALLOW:
        return Step(fire_ms, Action.START, manual=manual)
    if policy is Overlap.SKIP:
        return Step(fire_ms, Action.SKIP, "the previous execution is still running", manual)
    if tick.buffered_fire_ms is None:
        tick.buffered_fire_ms, tick.buffered_manual = fire_ms, manual
        return Step(fire_ms, Action.BUFFER, "waits for the previous execution to close", manual)
    return Step(fire_ms, Action.SKIP, "a firing is already buffered", manual)


def due_ms(schedule: Schedule, now_ms: int, recheck_ms: int) -> int | None:
    """When to look at the schedule next: its next fire time, or after `recheck_ms` while
    a firing waits for the previous execution to close."""
    if schedule.paused:
        return None
    times = [t for t in (schedule.next_fire_ms,) if t is not None]
    if schedule.buffered_fire_ms is not None:
        times.append(now_ms + recheck_ms)
    return min(times, default=None)


def remember(schedule: Schedule, firings: list[Firing]) -> list[Firing]:
    """The recent firings with `firings` added, the latest RECENT_FIRINGS."""
    return (schedule.recent + firings)[-RECENT_FIRINGS:]
