"""The embedded backend's scheduler thread: it sleeps until the earliest schedule is due.

It reads the earliest `due_ms` from the store (rows, so a restart re-arms it: the first
look fires what came due while the platform was down, as `catchUp` says), ticks the
firer when that time comes, and is woken early when a schedule is created, resumed,
triggered or deleted (`ScheduleFirer.on_change`). It never sleeps longer than
`MAX_SLEEP_S`, so a clock step or a write by another process is seen within it.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from treadle.app.schedule_firing import ScheduleFirer
from treadle.domain.ports import Clock

log = logging.getLogger(__name__)

MAX_SLEEP_S: Final = 60.0
# After a firing that failed and left its schedule due (throttled, store unavailable):
# without it the loop would spin on that schedule.
FAILURE_PAUSE_S: Final = 5.0


class ScheduleLoop:
    def __init__(self, firer: ScheduleFirer, clock: Clock) -> None:
        self._firer = firer
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedules", daemon=True)
        firer.on_change(self._wake.set)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            failed = False
            try:
                failed = self._firer.tick(self._clock.now_ms()).failed > 0
                earliest = self._firer.store.next_due_ms()
            except Exception:  # the store is unreachable: look again in a while
                log.exception("scheduler tick failed")
                earliest = None
            if earliest is None:
                sleep_s = MAX_SLEEP_S
            else:
                sleep_s = min(max(earliest - self._clock.now_ms(), 0) / 1000, MAX_SLEEP_S)
            if failed:
                sleep_s = max(sleep_s, FAILURE_PAUSE_S)
            if sleep_s > 0:
                self._wake.wait(sleep_s)
            self._wake.clear()
