"""In-process dispatcher over the persisted timer rows.

Timers live in the store (written in the same transaction as the change that sets
them), so a restart loses nothing: this loop only reads due rows and hands them to a
worker pool. A timer in flight is not handed out twice; a failing one backs off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from treadle.domain.ports import Clock, ExecutionStore, Timer

log = logging.getLogger(__name__)

_IDLE_POLL_S = 1.0
_FAILURE_BACKOFF_MS = 1000


class TimerScheduler:
    def __init__(
        self,
        store: ExecutionStore,
        clock: Clock,
        handler: Callable[[Timer], None],
        *,
        workers: int = 64,
        batch: int = 512,
    ) -> None:
        self._store = store
        self._clock = clock
        self._handler = handler
        self._batch = batch
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="timer")
        self._cond = threading.Condition()
        self._woken = False
        self._in_flight: set[tuple[str, str, str]] = set()
        self._backoff: dict[tuple[str, str, str], int] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self, due_ms: int) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False
            try:
                self._dispatch_due()
                sleep_s = self._sleep_for()
            except Exception:  # the loop must survive a store hiccup
                log.exception("scheduler iteration failed")
                sleep_s = _IDLE_POLL_S
            with self._cond:
                if not self._woken and not self._stopping and sleep_s > 0:
                    self._cond.wait(sleep_s)

    def _dispatch_due(self) -> None:
        now = self._clock.now_ms()
        for timer in self._store.due_timers(now, self._batch):
            key = (timer.arn, timer.kind.value, timer.op_id)
            with self._cond:
                if key in self._in_flight or self._backoff.get(key, 0) > now:
                    continue
                self._in_flight.add(key)
            self._pool.submit(self._run, timer, key)

    def _run(self, timer: Timer, key: tuple[str, str, str]) -> None:
        try:
            self._handler(timer)
            with self._cond:
                self._backoff.pop(key, None)
        except Exception:
            log.exception("timer %s failed; retrying later", key)
            with self._cond:
                self._backoff[key] = self._clock.now_ms() + _FAILURE_BACKOFF_MS
        finally:
            with self._cond:
                self._in_flight.discard(key)
                self._woken = True
                self._cond.notify_all()

    def _sleep_for(self) -> float:
        nxt = self._store.next_due_ms()
        if nxt is None:
            return _IDLE_POLL_S
        delta = (nxt - self._clock.now_ms()) / 1000
        # A due timer that is in flight or backing off must not make this spin.
        return min(max(delta, 0.005), _IDLE_POLL_S)
