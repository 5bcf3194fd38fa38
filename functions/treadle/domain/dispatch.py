"""The Dispatcher port: get each timer to the engine's `fire` at (not before) its due time.

`Scheduler.wake(due_ms)` is enough for an in-process loop that reads the store itself,
but not for a queue: SQS must be handed the timers, and can hold them for at most
15 minutes. So the party that sets timers (the engine after a commit, the sweep) hands
them to a `Dispatcher`, which takes those it can deliver on time and returns the rest;
a timer returned stays a row in the store and the sweep hands it over again once it
is near enough.

Delivery is at least once and may repeat or come late: the store, not the message, is
the truth. A consumer checks a delivered timer against the store (`TimerLookup`) before
firing it, so a timer cleared or moved since it was sent is dropped.

Kept in its own module rather than in `ports.py` so that adding it touched no shared
file; it belongs with the other ports and can move there unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from treadle.domain.ports import Timer


class Dispatcher(Protocol):
    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        """Arrange for each timer to reach `fire` once due; return those not taken.

        Raises a retryable TreadleError if some could not be handed over; they remain
        in the store, so the sweep delivers them later (late, never lost).
        """


class TimerSource(Protocol):
    """What the sweep reads: `ExecutionStore.due_timers`, earliest first."""

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]: ...


class TimerLookup(Protocol):
    def is_set(self, timer: Timer) -> bool:
        """Whether the store still holds this timer (same execution, kind, op and due)."""
