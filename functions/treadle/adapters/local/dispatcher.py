"""The embedded Dispatcher: the in-process scheduler already reads every timer row.

Timers are rows in the store before anyone dispatches them, and `TimerScheduler` polls
the store's due rows itself, so dispatching only has to cut its sleep short. It takes
every timer whatever its due time: nothing is left for the sweep (which is harmless
to run here too: it only wakes the loop).
"""

from __future__ import annotations

from collections.abc import Sequence

from treadle.domain.ports import Scheduler, Timer


class SchedulerDispatcher:
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        if timers:
            self._scheduler.wake(min(timer.due_ms for timer in timers))
        return []
