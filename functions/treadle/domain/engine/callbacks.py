"""Callbacks: completed or heartbeaten from outside, or timed out by their timers."""

from __future__ import annotations

from treadle.domain.engine.closing import request_invocation
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.history import error_payload, payload
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import CallbackTimedOut
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    ErrorObject,
    Execution,
    OperationStatus,
)
from treadle.domain.ports import Timer, TimerKind

MAX_CALLBACK_RESULT_BYTES = 1024 * 1024

_TIMEOUTS = {
    TimerKind.CALLBACK_TIMEOUT: ("callback_timeout", "Callback.Timeout", "Callback timed out."),
    TimerKind.CALLBACK_HEARTBEAT: (
        "callback_heartbeat_timeout",
        "Callback.Heartbeat",
        "Callback heartbeat timed out.",
    ),
}


def ensure_open(ex: Execution, ws: WorkingSet, op_id: str) -> None:
    stored = ws.ops.get(op_id)
    if ex.status in TERMINAL_EXECUTION_STATUSES or stored is None:
        raise CallbackTimedOut("The callback is no longer open: its execution has ended.")
    if stored.op.Status is not OperationStatus.STARTED:
        raise CallbackTimedOut(f"The callback is no longer open: it is {stored.op.Status.value}.")


def complete(
    ex: Execution,
    ws: WorkingSet,
    op_id: str,
    result: str | None,
    error: ErrorObject | None,
) -> None:
    """SendDurableExecutionCallbackSuccess/Failure: `error` None is a success."""
    ensure_open(ex, ws, op_id)
    succeeded = error is None
    op = ws.ops[op_id].op.deep_copy()
    trigger = "callback_success" if succeeded else "callback_failure"
    op.Status = OperationStatus(next_operation_status("CALLBACK", op.Status, trigger))
    op.EndTimestamp = ws.now_ms
    assert op.CallbackDetails is not None
    if succeeded:
        op.CallbackDetails.Result = result
        details = {"Result": payload(result)}
    else:
        op.CallbackDetails.Error = error
        details = {"Error": error_payload(error)}
    ws.put(op)
    ws.log.add("CallbackSucceeded" if succeeded else "CallbackFailed", ws.now_ms, details, op)
    _clear_timeouts(ws, op_id)
    request_invocation(ex, ws)


def heartbeat(ex: Execution, ws: WorkingSet, op_id: str, heartbeat_s: int) -> None:
    ensure_open(ex, ws, op_id)
    if heartbeat_s:
        due = ws.now_ms + heartbeat_s * 1000
        ws.set_timers.append(Timer(ex.arn, TimerKind.CALLBACK_HEARTBEAT, op_id, due))


def timed_out(ex: Execution, ws: WorkingSet, timer: Timer, config: EngineConfig) -> None:
    """A callback's timeout or heartbeat timeout elapsed while it was open."""
    stored = ws.ops.get(timer.op_id)
    if stored is None or stored.op.Status is not OperationStatus.STARTED:
        return
    op = stored.op.deep_copy()
    trigger, error_type, message = _TIMEOUTS[timer.kind]
    error = ErrorObject(ErrorType=error_type, ErrorMessage=message)
    op.Status = OperationStatus(next_operation_status("CALLBACK", op.Status, trigger))
    op.EndTimestamp = ws.now_ms
    if op.CallbackDetails is not None:
        op.CallbackDetails.Error = error
    ws.put(op)
    ws.log.add("CallbackTimedOut", ws.now_ms, {"Error": error_payload(error)}, op)
    _clear_timeouts(ws, op.Id)
    request_invocation(ex, ws)


def _clear_timeouts(ws: WorkingSet, op_id: str) -> None:
    ws.clear_timers.append((TimerKind.CALLBACK_TIMEOUT, op_id))
    ws.clear_timers.append((TimerKind.CALLBACK_HEARTBEAT, op_id))
