"""In-process notification of closed executions, for synchronous invokes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CompletionNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    def _event(self, arn: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(arn, threading.Event())

    def execution_closed(self, arn: str) -> None:
        self._event(arn).set()

    def wait(self, arn: str, timeout_s: float, is_closed: Callable[[], bool]) -> bool:
        """Block until `arn` closes; polling `is_closed()` each second covers a missed signal
        (another waiter's cleanup, or a close committed by another process)."""
        deadline = time.monotonic() + timeout_s
        while True:
            event = self._event(arn)
            if is_closed():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if event.wait(min(remaining, 1.0)):
                with self._lock:
                    if self._events.get(arn) is event:
                        del self._events[arn]
                return True
