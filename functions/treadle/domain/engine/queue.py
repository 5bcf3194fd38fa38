"""Queued starts (issue 14, point 5): a start accepted over the tenant's running limit
or start rate is written QUEUED, with its input and ExecutionStarted event but no
timers, and promoted to RUNNING later in FIFO order per tenant.

The execution timeout counts from the promotion, not the acceptance: a start that
waited in the queue must not lose its run time to the wait (and QUEUED has no way to
TIMED_OUT in the lifecycle).
"""

from __future__ import annotations

from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.lifecycle import next_execution_status
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Timer, TimerKind


def hold(ex: Execution, ws: WorkingSet) -> None:
    """Turn a new execution's start into a queued one: QUEUED, nothing scheduled."""
    ex.status = ExecutionStatus(next_execution_status(None, "queue"))
    ws.set_timers.clear()


def promote(ex: Execution, ws: WorkingSet) -> bool:
    """QUEUED -> RUNNING with its first invocation and its timeout, in one commit.

    False (and nothing changed) if the execution is no longer queued: promoted by
    another promoter, or stopped meanwhile. The store's version check makes a race of
    two promoters commit once.
    """
    if ex.status is not ExecutionStatus.QUEUED:
        return False
    ex.status = ExecutionStatus(next_execution_status(ex.status, "promote"))
    ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))
    timeout_ms = ws.now_ms + ex.execution_timeout_s * 1000
    ws.set_timers.append(Timer(ex.arn, TimerKind.EXECUTION_TIMEOUT, "", timeout_ms))
    return True
