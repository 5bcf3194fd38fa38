"""Closing an execution, and asking for an invocation when the backend changed it."""

from __future__ import annotations

from treadle.domain.engine.history import error_payload, payload
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.lifecycle import next_execution_status, next_operation_status
from treadle.domain.models import ErrorObject, Execution, ExecutionStatus, OperationStatus
from treadle.domain.ports import Timer, TimerKind

_CLOSE_EVENTS = {
    ExecutionStatus.SUCCEEDED: "ExecutionSucceeded",
    ExecutionStatus.FAILED: "ExecutionFailed",
    ExecutionStatus.TIMED_OUT: "ExecutionTimedOut",
    ExecutionStatus.STOPPED: "ExecutionStopped",
}
_CLOSE_TRIGGERS = {
    ExecutionStatus.SUCCEEDED: "handler_succeeded",
    ExecutionStatus.FAILED: "handler_failed",
    ExecutionStatus.TIMED_OUT: "execution_timeout",
    ExecutionStatus.STOPPED: "stop",
}
_DAY_MS = 86_400_000


def request_invocation(ex: Execution, ws: WorkingSet) -> None:
    """A backend completion happened: make sure the handler gets to see it."""
    ex.backend_seq = ws.change_seq
    if ex.status is ExecutionStatus.RUNNING and not ex.invocation_active and not ex.paused:
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))


def close(
    ex: Execution,
    ws: WorkingSet,
    status: ExecutionStatus,
    *,
    result: str | None = None,
    error: ErrorObject | None = None,
    trigger: str | None = None,
) -> None:
    now = ws.now_ms
    trigger = trigger or _CLOSE_TRIGGERS[status]
    ex.status = ExecutionStatus(next_execution_status(ex.status, trigger))
    ex.end_ms = now
    ex.result = result if status is ExecutionStatus.SUCCEEDED else None
    ex.error = error if status is not ExecutionStatus.SUCCEEDED else None
    ex.invocation_active = False
    ex.paused = False
    ex.closing_status = None
    # Fence any invocation still running: its tokens now belong to a past generation.
    ex.generation += 1
    ws.clear_all_timers = True
    ws.set_timers.clear()
    exec_stored = ws.ops.get(ex.exec_id)
    if exec_stored is not None and exec_stored.op.Status is OperationStatus.STARTED:
        op = exec_stored.op.deep_copy()
        trigger = _CLOSE_TRIGGERS[status]
        op.Status = OperationStatus(next_operation_status("EXECUTION", op.Status, trigger))
        op.EndTimestamp = now
        ws.put(op)
    if status is ExecutionStatus.SUCCEEDED:
        details = {"Result": payload(result)}
    else:
        details = {"Error": error_payload(error)}
    ws.log.add(_CLOSE_EVENTS[status], now, details, op_id=ex.exec_id, name=ex.name)
    retention_ms = ex.retention_days * _DAY_MS
    ws.set_timers.append(Timer(ex.arn, TimerKind.RETENTION, "", now + retention_ms))
    if ex.parent_arn and ex.parent_op_id:
        # Outbox to the parent of a chained invoke, in this same transaction.
        ws.set_timers.append(Timer(ex.parent_arn, TimerKind.CHILD_DONE, ex.parent_op_id, now))


def close_as_checkpointed(ex: Execution, ws: WorkingSet) -> None:
    """Close with the outcome the handler checkpointed on its EXECUTION operation."""
    status = ex.closing_status
    assert status is not None
    close(ex, ws, status, result=ex.result, error=ex.error)
