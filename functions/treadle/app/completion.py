"""In-process notification of closed executions, for synchronous invokes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CompletionNotifier:
    """Only executions somebody waits for are tracked: every other close is a no-op, so
    50,000 asynchronous executions leave nothing behind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # arn -> (event, number of waiters on it)
        self._waiting: dict[str, tuple[threading.Event, int]] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """The server is stopping: every wait ends now and later ones at once, so that no
        held request holds the stop up (the executions go on after the restart)."""
        with self._lock:
            self._stopping = True
            events = [event for event, _ in self._waiting.values()]
        for event in events:
            event.set()

    def execution_closed(self, arn: str) -> None:
        with self._lock:
            entry = self._waiting.get(arn)
        if entry is not None:
            entry[0].set()

    def waiters(self) -> int:
        with self._lock:
            return len(self._waiting)

    def wait(self, arn: str, timeout_s: float, is_closed: Callable[[], bool]) -> bool:
        """Block until `arn` closes; polling `is_closed()` each second covers a missed signal
        (a close committed by another process)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            event, count = self._waiting.get(arn, (threading.Event(), 0))
            self._waiting[arn] = (event, count + 1)
        try:
            # Registered before the first check: a close after it sets the event.
            while True:
                if is_closed():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    return False
                if event.wait(min(remaining, 1.0)):
                    return not self._stopping or is_closed()
        finally:
            with self._lock:
                event, count = self._waiting[arn]
                if count <= 1:
                    del self._waiting[arn]
                else:
                    self._waiting[arn] = (event, count - 1)
