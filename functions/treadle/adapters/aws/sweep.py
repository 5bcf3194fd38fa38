"""The timer sweep (a scheduled function, every minute) and the table-side timer check.

SQS holds a message for at most 15 minutes, so a timer further away than that stays a
row in the table until a sweep finds it within reach. The sweep must not send a timer
once per run (15 copies of every timer, all arriving at its due instant, would fire it
concurrently), so each run sends only:

- the timers *entering* the horizon during this interval, due in
  `(now + horizon - interval, now + horizon]`: the ones nobody could send before (the
  engine sends what is due within the horizon when it sets it);
- *overdue* timers, as a safety net for a message lost, refused or dropped: a timer is
  resent when it has been overdue for 1, 2, 4, 8 ... intervals, so a timer whose
  firing keeps failing costs a logarithmic number of copies, and a fresh copy never
  races one still in the queue's first minute.

A run that is missed or late leaves the timers of its window to the overdue net: they
fire one or two minutes late, never twice at once.

The port's `due_timers(now, limit)` has no lower bound, so a run reads every timer due
before the end of its window (the earliest `limit`) and filters; under a backlog larger
than `limit` the window is not reached and its timers come through the overdue net. A
ranged query on the due-timers index would let the sweep read only its window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import items as it
from treadle.adapters.aws import tables as t
from treadle.adapters.aws.errors import translated
from treadle.domain.ports import Dispatcher, Timer, TimerSource

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

HORIZON_S: Final = 900
INTERVAL_S: Final = 60  # the schedule's rate (infra/functions.py SWEEP_RATE)
SWEEP_LIMIT: Final = 10_000


@dataclass(frozen=True)
class SweepReport:
    read: int  # timers due before the end of the window
    entering: int  # sent because they entered the horizon
    overdue: int  # resent by the safety net
    deferred: int  # sent to a dispatcher that did not take them (none for SQS)
    truncated: bool  # `limit` timers read: the window may not have been reached


def resend_overdue(age_ms: int, interval_ms: int) -> bool:
    """Whether a timer overdue by `age_ms` is resent by this run.

    True once per power of two of whole intervals (1, 2, 4, 8 ...): with one run per
    interval exactly one run sees each such count.
    """
    if age_ms < interval_ms:
        return False  # its message is likely still on its way
    whole = age_ms // interval_ms
    return whole & (whole - 1) == 0


def sweep(
    store: TimerSource,
    dispatcher: Dispatcher,
    now_ms: int,
    horizon_s: int = HORIZON_S,
    *,
    interval_s: int = INTERVAL_S,
    limit: int = SWEEP_LIMIT,
) -> SweepReport:
    """Hand the timers entering the horizon, and those long overdue, to `dispatcher`."""
    if not 0 < interval_s <= horizon_s:
        raise ValueError("the interval must be positive and within the horizon")
    interval_ms = interval_s * 1000
    upto = now_ms + horizon_s * 1000
    timers = store.due_timers(upto, limit)
    entering = [timer for timer in timers if upto - interval_ms < timer.due_ms <= upto]
    overdue = [timer for timer in timers if resend_overdue(now_ms - timer.due_ms, interval_ms)]
    deferred = dispatcher.dispatch(entering + overdue, now_ms) if entering or overdue else []
    report = SweepReport(
        read=len(timers),
        entering=len(entering),
        overdue=len(overdue),
        deferred=len(deferred),
        truncated=len(timers) >= limit,
    )
    if report.truncated:
        log.warning("sweep read %d timers, its limit: later ones wait for the overdue net", limit)
    if overdue:
        log.info("sweep resent %d overdue timers", len(overdue))
    if deferred:
        # They come back only through the overdue net: the two horizons must agree.
        log.warning("the dispatcher refused %d timers within the sweep's horizon", len(deferred))
    return report


def resend_due(
    store: TimerSource, dispatcher: Dispatcher, now_ms: int, *, limit: int = SWEEP_LIMIT
) -> int:
    """Hand every timer due by now to `dispatcher` at once: for a consumer that starts
    where one died holding their messages. The number handed over."""
    due = store.due_timers(now_ms, limit)
    if due:
        dispatcher.dispatch(due, now_ms)
    return len(due)


class DynamoTimerLookup:
    """`TimerLookup` over the single table: is a delivered timer still the stored one?

    An execution's own timers are a map on its META item; a timer another execution set
    on it (e.g. a child's CHILD_DONE on its parent) is its own `T#` item. One timer may
    be in both places at once, so both are read before saying no.
    """

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def is_set(self, timer: Timer) -> bool:
        pk = it.execution_pk(timer.arn)
        key = it.timer_key(timer.kind, timer.op_id)
        with translated(f"read timers of {timer.arn}"):
            meta = self._client.get_item(
                TableName=self._table,
                Key=it.key(pk, it.META_SK),
                ConsistentRead=True,
                ProjectionExpression="#timers",
                ExpressionAttributeNames={"#timers": it.TIMERS},
            ).get("Item")
            # A projection of an absent map may come back as no item at all.
            if meta is not None and it.timers_of(meta).get(key) == timer.due_ms:
                return True
            outbox = self._client.get_item(
                TableName=self._table,
                Key=it.key(pk, it.TIMER_PREFIX + key),
                ConsistentRead=True,
                ProjectionExpression="#due",
                ExpressionAttributeNames={"#due": t.DUE_MS},
            ).get("Item")
        return outbox is not None and it.number(outbox, t.DUE_MS) == timer.due_ms
