"""Firing schedules: start their executions, then record the firing (`docs/schedules.md`).

`ScheduleFirer.tick(now)` looks at every schedule due by `now` (the embedded scheduler
thread calls it when the earliest one is due, the AWS sweep every minute) and
`trigger` fires one now. The order is what makes a firing exactly-once: first the
starts, idempotent on the execution name `<schedule>-<fire time>`, then one
compare-and-swap of the schedule. A process killed between the two, or a second
scheduler looking at the same instant, starts the same names again and gets the
executions already started; only one of them advances the schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from treadle.app.aliases import resolve
from treadle.app.quotas import Quotas
from treadle.domain.engine import Engine
from treadle.domain.errors import ConcurrentModification, InvalidParameter, NotFound, TreadleError
from treadle.domain.models import TERMINAL_EXECUTION_STATUSES, Execution
from treadle.domain.ports import AliasStore, Clock, FunctionStore
from treadle.domain.schedules import (
    MISFIRE_GRACE_MS,
    Action,
    Calendar,
    Firing,
    Outcome,
    Schedule,
    ScheduleStore,
    Step,
    Tick,
    due_ms,
    fire_name,
    overlap_step,
    plan_tick,
    remember,
)

log = logging.getLogger(__name__)

_ATTEMPTS: Final = 8  # compare-and-swap tries before giving up until the next tick
_PAGE: Final = 100
_OUTCOMES: Final = {
    Action.SKIP: Outcome.SKIPPED,
    Action.BUFFER: Outcome.BUFFERED,
    Action.MISS: Outcome.MISSED,
}


@dataclass
class TickReport:
    schedules: int = 0  # looked at
    started: int = 0
    skipped: int = 0  # skipped, buffered or missed
    failed: int = 0  # refused starts, and schedules left for the next tick

    def add(self, firings: Sequence[Firing]) -> None:
        self.schedules += 1
        for firing in firings:
            if firing.outcome is Outcome.STARTED:
                self.started += 1
            elif firing.outcome is Outcome.FAILED:
                self.failed += 1
            else:
                self.skipped += 1


@dataclass
class _Run:
    firings: list[Firing] = field(default_factory=list)
    last: dict[str, object] = field(default_factory=dict)


class ScheduleFirer:
    def __init__(
        self,
        *,
        store: ScheduleStore,
        calendar: Calendar,
        engine: Engine,
        functions: FunctionStore,
        aliases: AliasStore | None,
        quotas: Quotas,
        clock: Clock,
        recheck_ms: int = 60_000,
        grace_ms: int = MISFIRE_GRACE_MS,
    ) -> None:
        """`recheck_ms`: how often a buffered firing looks whether the previous
        execution has closed (the AWS sweep cannot look more often than it runs)."""
        self.store = store
        self.calendar = calendar
        self.engine = engine
        self.functions = functions
        self.aliases = aliases
        self.quotas = quotas
        self.clock = clock
        self.recheck_ms = recheck_ms
        self.grace_ms = grace_ms
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` when a schedule's next due time may have moved earlier."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    # -- due schedules -----------------------------------------------------------------

    def tick(self, now_ms: int | None = None) -> TickReport:
        """Fire every schedule due by `now_ms` (default: the clock's now)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        report = TickReport()
        seen: set[tuple[str, str]] = set()
        while True:
            due = self.store.due(now, _PAGE)
            fresh = [s for s in due if (s.tenant, s.name) not in seen]
            for schedule in fresh:
                seen.add((schedule.tenant, schedule.name))
                try:
                    report.add(self.fire_due(schedule.tenant, schedule.name, now))
                except Exception:  # one schedule's trouble stops no other: next tick
                    log.exception("schedule %s of %s not fired", schedule.name, schedule.tenant)
                    report.failed += 1
            if not fresh or len(due) < _PAGE:
                return report

    def fire_due(self, tenant: str, name: str, now_ms: int) -> list[Firing]:
        """Fire one schedule if it is due at `now_ms`: the firings it recorded."""
        for _ in range(_ATTEMPTS):
            try:
                schedule = self.store.get(tenant, name)
            except NotFound:
                return []
            if schedule.paused or schedule.due_ms is None or schedule.due_ms > now_ms:
                return []  # another scheduler did it, or it was paused meanwhile
            previous_open = self._open(schedule.last_execution_arn)
            tick = plan_tick(
                schedule, now_ms, self.calendar, previous_open=previous_open, grace_ms=self.grace_ms
            )
            run = self._run(schedule, tick.steps, now_ms)
            try:
                self._save(schedule, tick, run, now_ms)
            except ConcurrentModification:
                continue  # read again: the starts above are found by name next time
            return run.firings
        raise ConcurrentModification(f"Schedule {name} is changing too fast; next tick.")

    # -- trigger now -------------------------------------------------------------------

    def trigger(self, tenant: str, name: str) -> Firing:
        """Fire now, out of the cron's rhythm (paused or not), under the overlap policy."""
        now = self.clock.now_ms()
        fire_ms = now - now % 1000
        for _ in range(_ATTEMPTS):
            schedule = self.store.get(tenant, name)
            tick = Tick(
                next_fire_ms=schedule.next_fire_ms,
                buffered_fire_ms=schedule.buffered_fire_ms,
                buffered_manual=schedule.buffered_manual,
            )
            open_ = self._open(schedule.last_execution_arn)
            step = overlap_step(schedule.overlap, fire_ms, open_, tick, manual=True)
            run = self._run(schedule, [step], now)
            try:
                self._save(schedule, tick, run, now)
            except ConcurrentModification:
                continue
            self.changed()  # a buffered firing makes it due sooner
            return run.firings[-1]
        raise ConcurrentModification(f"Schedule {name} is changing too fast; try again.")

    # -- shared ------------------------------------------------------------------------

    def _run(self, schedule: Schedule, steps: Sequence[Step], now_ms: int) -> _Run:
        run = _Run()
        for step in steps:
            if step.action is not Action.START:
                run.firings.append(
                    Firing(
                        fire_ms=step.fire_ms,
                        outcome=_OUTCOMES[step.action],
                        at_ms=now_ms,
                        reason=step.reason,
                        manual=step.manual,
                    )
                )
                continue
            try:
                ex = self.start(schedule, step.fire_ms, manual=step.manual)
            except TreadleError as exc:
                if exc.retryable:
                    raise  # throttled, store unavailable: the schedule stays due
                run.firings.append(
                    Firing(
                        fire_ms=step.fire_ms,
                        outcome=Outcome.FAILED,
                        at_ms=now_ms,
                        reason=exc.message,
                        manual=step.manual,
                    )
                )
                continue
            run.firings.append(
                Firing(
                    fire_ms=step.fire_ms,
                    outcome=Outcome.STARTED,
                    at_ms=now_ms,
                    execution_arn=ex.arn,
                    manual=step.manual,
                )
            )
            run.last = {"last_fire_ms": step.fire_ms, "last_execution_arn": ex.arn}
        return run

    def _save(self, schedule: Schedule, tick: Tick, run: _Run, now_ms: int) -> Schedule:
        updated = schedule.model_copy(
            update={
                "next_fire_ms": tick.next_fire_ms,
                "buffered_fire_ms": tick.buffered_fire_ms,
                "buffered_manual": tick.buffered_manual,
                "recent": remember(schedule, run.firings),
                **run.last,
            }
        )
        updated.due_ms = due_ms(updated, now_ms, self.recheck_ms)
        return self.store.replace(updated)

    def start(self, schedule: Schedule, fire_ms: int, *, manual: bool) -> Execution:
        """The execution of one firing: started now, or the one started before."""
        fn = resolve(
            self.functions, self.aliases, schedule.tenant, schedule.function_name,
            schedule.qualifier,
        )  # fmt: skip
        if not fn.durable:
            raise InvalidParameter(f"Function {schedule.function_name} is not durable.")
        name = fire_name(schedule.name, fire_ms, manual=manual)
        known = self.engine.store.find_by_name(schedule.tenant, fn.function_name, name)
        if known is not None:
            return known  # fired before (a restart, another scheduler): not again
        # Admitted as any start: over the running limit or the rate, it waits QUEUED
        # (and counts as the firing's open execution for the overlap policy meanwhile).
        limits, queued = self.quotas.admit_start(schedule.tenant)
        ex, _ = self.engine.start(fn, name, schedule.input_payload, limits=limits, queued=queued)
        return ex

    def _open(self, arn: str | None) -> bool:
        if arn is None:
            return False
        try:
            return self.engine.store.get(arn).status not in TERMINAL_EXECUTION_STATUSES
        except NotFound:
            return False
