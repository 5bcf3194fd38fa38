"""Chained invokes: an execution starts another function and waits for its outcome.

Both directions go through timer rows written in the same transaction as the change
that needs them (an outbox): the parent's checkpoint writes CHAINED_START, the child's
close writes CHILD_DONE on the parent. A crash between the two executions' commits
therefore loses nothing; the child's id is derived from (parent, operation), so
starting it again is idempotent. Starting the child (CHAINED_START) reaches other
executions and the runtime, so the engine drives it; the changes are here.
"""

from __future__ import annotations

import uuid
from typing import Any

from treadle.domain.engine.closing import request_invocation
from treadle.domain.engine.history import error_payload, payload
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import NotFound
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    ChainedInvokeDetails,
    ErrorObject,
    Execution,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationUpdate,
)
from treadle.domain.ports import ExecutionStore, FunctionStore, Timer, TimerKind

_NAMESPACE = uuid.UUID("5f0c2d3e-8a4b-4c55-9a1e-7d4f3c2b1a00")
_CHILD_OUTCOMES = {
    ExecutionStatus.SUCCEEDED: ("child_succeeded", "ChainedInvokeSucceeded"),
    ExecutionStatus.FAILED: ("child_failed", "ChainedInvokeFailed"),
    ExecutionStatus.TIMED_OUT: ("child_timed_out", "ChainedInvokeTimedOut"),
    ExecutionStatus.STOPPED: ("child_stopped", "ChainedInvokeStopped"),
}


def child_execution_id(parent_arn: str, op_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{parent_arn}#{op_id}"))


def split_ref(ref: str) -> tuple[str, str | None]:
    """Function name and qualifier from a name, partial ARN or ARN."""
    parts = ref.split(":")
    if ref.startswith("arn:"):
        name = parts[6] if len(parts) > 6 else ""
        qualifier = parts[7] if len(parts) > 7 else None
    elif len(parts) >= 3 and parts[1] == "function":  # 123456789012:function:name[:q]
        name, qualifier = parts[2], parts[3] if len(parts) > 3 else None
    else:
        name, qualifier = parts[0], parts[1] if len(parts) > 1 else None
    return name, qualifier


def chained_started(
    ex: Execution,
    ws: WorkingSet,
    op: Operation,
    update: OperationUpdate,
    functions: FunctionStore,
) -> None:
    """A checkpointed CHAINED_INVOKE START: record it and queue the child's start."""
    assert update.ChainedInvokeOptions is not None
    opts = update.ChainedInvokeOptions
    name, qualifier = split_ref(opts.FunctionName)
    details: dict[str, Any] = {"FunctionName": opts.FunctionName}
    if opts.TenantId:
        details["TenantId"] = opts.TenantId
    details["Input"] = payload(update.Payload)
    try:
        target = functions.get(ex.tenant, name, qualifier or "$LATEST")
    except NotFound as exc:
        ws.log.add("ChainedInvokeStarted", ws.now_ms, details, op)
        error = ErrorObject(ErrorType="ResourceNotFoundException", ErrorMessage=exc.message)
        _settle(ex, ws, op, "child_failed", "ChainedInvokeFailed", None, error)
        return
    child_id = child_execution_id(ex.arn, op.Id)
    details["ExecutedVersion"] = target.version
    if target.durable:
        details["DurableExecutionArn"] = (
            f"{target.qualified_arn}/durable-execution/{child_id}/{child_id}"
        )
    ws.log.add("ChainedInvokeStarted", ws.now_ms, details, op)
    ws.set_timers.append(Timer(ex.arn, TimerKind.CHAINED_START, op.Id, ws.now_ms))


def _settle(
    ex: Execution,
    ws: WorkingSet,
    op: Operation,
    trigger: str,
    event_type: str,
    result: str | None,
    error: ErrorObject | None,
) -> None:
    op = op.deep_copy()
    op.Status = OperationStatus(next_operation_status("CHAINED_INVOKE", op.Status, trigger))
    op.EndTimestamp = ws.now_ms
    op.ChainedInvokeDetails = ChainedInvokeDetails(Result=result, Error=error)
    ws.put(op)
    if event_type == "ChainedInvokeSucceeded":
        details = {"Result": payload(result)}
    else:
        details = {"Error": error_payload(error)}
    ws.log.add(event_type, ws.now_ms, details, op)
    request_invocation(ex, ws)


def plain_outcome(
    ex: Execution, ws: WorkingSet, timer: Timer, result: str | None, error: ErrorObject | None
) -> None:
    """The outcome of a chained invoke that ran a plain function (or found none)."""
    ws.clear_timers.append((timer.kind, timer.op_id))
    stored = ws.ops.get(timer.op_id)
    if stored is not None and stored.op.Status is OperationStatus.STARTED:
        if error is None:
            _settle(ex, ws, stored.op, "child_succeeded", "ChainedInvokeSucceeded", result, None)
        else:
            _settle(ex, ws, stored.op, "child_failed", "ChainedInvokeFailed", None, error)


def child_done(ex: Execution, ws: WorkingSet, timer: Timer, store: ExecutionStore) -> None:
    """A durable child closed: settle the parent's operation with the child's outcome."""
    if ex.invocation_active:
        # The parent is still running the invocation that started the child (it is
        # about to suspend): record the outcome after that invocation's end, so
        # its history reads invoke, invocation end, outcome, as on AWS.
        ws.set_timers.append(Timer(ex.arn, TimerKind.CHILD_DONE, timer.op_id, ws.now_ms + 20))
        return
    ws.clear_timers.append((timer.kind, timer.op_id))
    stored = ws.ops.get(timer.op_id)
    if stored is None or stored.op.Status is not OperationStatus.STARTED:
        return
    child_arn = _child_arn(ex, timer.op_id, store)
    try:
        child = store.get(child_arn) if child_arn else None
    except NotFound:
        child = None
    if child is None or child.status not in _CHILD_OUTCOMES:
        return
    trigger, event_type = _CHILD_OUTCOMES[child.status]
    _settle(ex, ws, stored.op, trigger, event_type, child.result, child.error)


def _child_arn(ex: Execution, op_id: str, store: ExecutionStore) -> str | None:
    started = store.find_event(ex.arn, op_id, "ChainedInvokeStarted")
    if started is None:
        return None
    details = (started.model_extra or {}).get("ChainedInvokeStartedDetails", {})
    arn = details.get("DurableExecutionArn")
    return str(arn) if arn else None
