"""What the execution's own timers change: a wait elapsed, a step retry due, its timeout.

Each handler runs inside the engine's change of the timer's execution, after the
engine has cleared the timer and checked the execution is still open (see
`Engine.timer_handlers`). Callback timeouts are in `callbacks`, chained invokes in
`chained`.
"""

from __future__ import annotations

from treadle.domain.engine.closing import close, request_invocation
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    ErrorObject,
    Execution,
    ExecutionStatus,
    Operation,
    OperationStatus,
)
from treadle.domain.ports import Timer

# A re-armed compressed timer looks again this much later.
_RECHECK_MS = 20


def execution_timed_out(ex: Execution, ws: WorkingSet, timer: Timer, config: EngineConfig) -> None:
    error = ErrorObject(
        ErrorType="Execution.TimedOut",
        ErrorMessage=f"Execution timed out after {ex.execution_timeout_s} seconds.",
    )
    close(ex, ws, ExecutionStatus.TIMED_OUT, error=error)


def wait_elapsed(ex: Execution, ws: WorkingSet, timer: Timer, config: EngineConfig) -> None:
    op = _due_operation(ex, ws, timer, config)
    if op is None or op.Status is not OperationStatus.STARTED:
        return
    now = ws.now_ms
    op.Status = OperationStatus(next_operation_status("WAIT", op.Status, "wait_elapsed"))
    op.EndTimestamp = now
    ws.put(op)
    end = op.WaitDetails.ScheduledEndTimestamp if op.WaitDetails else None
    duration = round(((end or now) - op.StartTimestamp) / 1000)
    ws.log.add("WaitSucceeded", now, {"Duration": duration}, op)
    request_invocation(ex, ws)


def retry_due(ex: Execution, ws: WorkingSet, timer: Timer, config: EngineConfig) -> None:
    op = _due_operation(ex, ws, timer, config)
    if op is None or op.Status is not OperationStatus.PENDING:
        return
    op.Status = OperationStatus(next_operation_status("STEP", op.Status, "retry_due"))
    ws.put(op)
    request_invocation(ex, ws)


def _due_operation(
    ex: Execution, ws: WorkingSet, timer: Timer, config: EngineConfig
) -> Operation | None:
    """A copy of the operation a wait or retry timer is about; None to do nothing now."""
    stored = ws.ops.get(timer.op_id)
    if stored is None:
        return None
    if config.compressed and ex.invocation_active:
        # A compressed (test clock) wait must not end before the invocation that
        # started it has: that order only happens in real time for long handlers.
        ws.clear_timers.clear()
        ws.set_timers.append(Timer(ex.arn, timer.kind, timer.op_id, ws.now_ms + _RECHECK_MS))
        return None
    return stored.op.deep_copy()
