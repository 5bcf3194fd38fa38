"""Schedule use cases, tenant-scoped: create, read, pause, resume, delete, trigger.

Firing is `schedule_firing.ScheduleFirer`; this module validates what a tenant asks
(the cron expression and zone through the `Calendar`, the function and qualifier
through the function store) and writes each change as one compare-and-swap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from treadle.app.aliases import resolve
from treadle.app.schedule_firing import ScheduleFirer
from treadle.domain.errors import ConcurrentModification, InvalidParameter, NotFound
from treadle.domain.schedules import (
    NAME_PATTERN,
    CatchUp,
    Firing,
    Overlap,
    Schedule,
    due_ms,
)

# Below the DynamoDB adapter's S3 offload threshold: on AWS the sweep Lambda starts the
# executions, and its role may write the table and the queue, not the bucket.
MAX_INPUT_BYTES: Final = 64 * 1024
_ATTEMPTS: Final = 8


@dataclass(frozen=True)
class NewSchedule:
    name: str
    cron: str
    function_name: str
    timezone: str = "UTC"
    qualifier: str = "$LATEST"
    input: Any = None
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.NONE
    paused: bool = False


class ScheduleService:
    def __init__(self, firer: ScheduleFirer) -> None:
        self.firer = firer
        self.store = firer.store
        self.calendar = firer.calendar
        self.clock = firer.clock

    def create(self, tenant: str, new: NewSchedule) -> Schedule:
        if not re.fullmatch(NAME_PATTERN, new.name):
            raise InvalidParameter(
                f"Invalid schedule name {new.name!r}: 1 to 47 letters, digits, - or _."
            )
        self.calendar.check(new.cron, new.timezone)
        fn = resolve(
            self.firer.functions, self.firer.aliases, tenant, new.function_name, new.qualifier
        )
        if not fn.durable:
            raise InvalidParameter(
                f"Function {new.function_name} is not durable: a schedule starts durable "
                "executions."
            )
        payload = json.dumps(new.input, separators=(",", ":"))
        if len(payload.encode()) > MAX_INPUT_BYTES:
            raise InvalidParameter(f"The schedule's input exceeds {MAX_INPUT_BYTES} bytes.")
        now = self.clock.now_ms()
        schedule = Schedule(
            tenant=tenant,
            name=new.name,
            cron=new.cron.strip(),
            timezone=new.timezone,
            function_name=new.function_name,
            qualifier=new.qualifier,
            input_payload=payload,
            overlap=new.overlap,
            catch_up=new.catch_up,
            paused=new.paused,
            created_ms=now,
        )
        if not new.paused:
            schedule.next_fire_ms = self.calendar.next_after(schedule.cron, new.timezone, now)
        schedule.due_ms = due_ms(schedule, now, self.firer.recheck_ms)
        self.store.create(schedule)
        self.firer.changed()
        return self.store.get(tenant, new.name)

    def get(self, tenant: str, name: str) -> Schedule:
        return self.store.get(tenant, _named(name))

    def list(
        self, tenant: str, limit: int | None, marker: str | None
    ) -> tuple[list[Schedule], str | None]:
        limit = 50 if limit is None else limit
        if not 1 <= limit <= 1000:
            raise InvalidParameter("limit must be between 1 and 1000.")
        return self.store.list_page(tenant, limit, marker)

    def pause(self, tenant: str, name: str) -> Schedule:
        def change(s: Schedule) -> None:
            s.paused, s.next_fire_ms = True, None

        return self._update(tenant, name, change)

    def resume(self, tenant: str, name: str) -> Schedule:
        """From now on: the fire times that passed while paused are not run."""

        def change(s: Schedule) -> None:
            if s.paused:
                s.paused = False
                s.next_fire_ms = self.calendar.next_after(s.cron, s.timezone, now)

        now = self.clock.now_ms()
        resumed = self._update(tenant, name, change)
        self.firer.changed()
        return resumed

    def delete(self, tenant: str, name: str) -> None:
        """The executions it started stay; a new schedule of the same name starting the
        same fire time finds them (same name, same input: the same start)."""
        self.store.delete(tenant, _named(name))
        self.firer.changed()

    def trigger(self, tenant: str, name: str) -> Firing:
        return self.firer.trigger(tenant, _named(name))

    def _update(self, tenant: str, name: str, change: Callable[[Schedule], None]) -> Schedule:
        for _ in range(_ATTEMPTS):
            schedule = self.store.get(tenant, _named(name))
            updated = schedule.model_copy(deep=True)
            change(updated)
            updated.due_ms = due_ms(updated, self.clock.now_ms(), self.firer.recheck_ms)
            if updated == schedule:
                return schedule
            try:
                return self.store.replace(updated)
            except ConcurrentModification:
                continue
        raise ConcurrentModification(f"Schedule {name} is changing too fast; try again.")


def _named(name: str) -> str:
    """A name no schedule can have is simply not found (and never reaches a store key)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise NotFound(f"Schedule {name} not found.")
    return name
