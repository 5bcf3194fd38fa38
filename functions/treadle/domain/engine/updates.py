"""One accepted checkpoint update applied: the operation's new state, its event, its timers.

`apply_update` turns one update that `checkpoint.validate_batch` accepted into changes
of the working set; EXECUTION updates and chained invokes are handled by the batch
(`checkpoint.apply_checkpoint`), as they reach beyond the operation.
"""

from __future__ import annotations

from treadle.domain.engine.history import error_payload, payload, retry_details
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    CallbackDetails,
    ContextDetails,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    StepDetails,
    WaitDetails,
)
from treadle.domain.ports import Timer, TimerKind


def _new_op(u: OperationUpdate, status: str, now_ms: int) -> Operation:
    return Operation(
        Id=u.Id,
        ParentId=u.ParentId,
        Name=u.Name,
        Type=u.Type,
        SubType=u.SubType,
        StartTimestamp=now_ms,
        Status=OperationStatus(status),
    )


def apply_update(ws: WorkingSet, u: OperationUpdate, arn: str, new_callback_id: str | None) -> None:
    """Apply one validated, non-EXECUTION update to the working set."""
    stored = ws.ops.get(u.Id)
    current = stored.op if stored else None
    status = next_operation_status(u.Type, current.Status if current else None, u.Action)
    now = ws.now_ms
    op = current.deep_copy() if current else _new_op(u, status, now)
    op.Status = OperationStatus(status)
    if u.Type is OperationType.STEP:
        _apply_step(ws, u, op, arn)
    elif u.Type is OperationType.CONTEXT:
        _apply_context(ws, u, op)
    elif u.Type is OperationType.WAIT:
        _apply_wait(ws, u, op, arn)
    elif u.Type is OperationType.CALLBACK:
        assert new_callback_id is not None
        _apply_callback(ws, u, op, arn, new_callback_id)
    elif u.Type is OperationType.CHAINED_INVOKE:
        ws.put(op)
        ws.chained_invokes.append((op, u))


def _apply_step(ws: WorkingSet, u: OperationUpdate, op: Operation, arn: str) -> None:
    details = op.StepDetails or StepDetails(Attempt=0)
    attempt = details.Attempt or 0
    now = ws.now_ms
    if u.Action is OperationAction.START:
        op.StartTimestamp = now if op.StartTimestamp is None else op.StartTimestamp
        details.NextAttemptTimestamp = None
        op.StepDetails = details
        ws.put(op)
        ws.log.add("StepStarted", now, {}, op)
        return
    attempt += 1
    details.Attempt = attempt
    if u.Action is OperationAction.RETRY:
        ws.operations_added += 1  # AWS meters a step as 1 + N retries (or polls)
        delay = (u.StepOptions.NextAttemptDelaySeconds if u.StepOptions else None) or 0
        due = now + delay * 1000
        details.NextAttemptTimestamp = due
        details.Error = u.Error
        details.Result = u.Payload
        op.StepDetails = details
        ws.put(op)
        if u.Payload is not None or u.Error is None:
            ws.log.add(
                "StepSucceeded",
                now,
                {"Result": payload(u.Payload), "RetryDetails": retry_details(attempt, delay)},
                op,
            )
        else:
            ws.log.add(
                "StepFailed",
                now,
                {"Error": error_payload(u.Error), "RetryDetails": retry_details(attempt, delay)},
                op,
            )
        ws.set_timers.append(Timer(arn, TimerKind.RETRY, op.Id, due))
        return
    op.EndTimestamp = now
    details.NextAttemptTimestamp = None
    if u.Action is OperationAction.SUCCEED:
        details.Result, details.Error = u.Payload, None
        op.StepDetails = details
        ws.put(op)
        ws.log.add(
            "StepSucceeded",
            now,
            {"Result": payload(u.Payload), "RetryDetails": retry_details(attempt)},
            op,
        )
    else:
        details.Error, details.Result = u.Error, None
        op.StepDetails = details
        ws.put(op)
        ws.log.add(
            "StepFailed",
            now,
            {"Error": error_payload(u.Error), "RetryDetails": retry_details(attempt)},
            op,
        )


def _apply_context(ws: WorkingSet, u: OperationUpdate, op: Operation) -> None:
    now = ws.now_ms
    if u.Action is OperationAction.START:
        op.ContextDetails = ContextDetails()
        ws.put(op)
        ws.log.add("ContextStarted", now, {}, op)
        return
    op.EndTimestamp = now
    replay = u.ContextOptions.ReplayChildren if u.ContextOptions else None
    if u.Action is OperationAction.SUCCEED:
        op.ContextDetails = ContextDetails(ReplayChildren=replay, Result=u.Payload)
        ws.put(op)
        ws.log.add("ContextSucceeded", now, {"Result": payload(u.Payload)}, op)
    else:
        op.ContextDetails = ContextDetails(ReplayChildren=replay, Error=u.Error)
        ws.put(op)
        ws.log.add("ContextFailed", now, {"Error": error_payload(u.Error)}, op)


def _apply_wait(ws: WorkingSet, u: OperationUpdate, op: Operation, arn: str) -> None:
    now = ws.now_ms
    if u.Action is OperationAction.START:
        seconds = u.WaitOptions.WaitSeconds if u.WaitOptions else 0
        assert seconds is not None
        end = now + seconds * 1000
        op.WaitDetails = WaitDetails(ScheduledEndTimestamp=end)
        ws.put(op)
        ws.log.add("WaitStarted", now, {"Duration": seconds, "ScheduledEndTimestamp": end}, op)
        ws.set_timers.append(Timer(arn, TimerKind.WAIT, op.Id, end))
        return
    op.EndTimestamp = now
    ws.put(op)
    details = {"Error": error_payload(u.Error)} if u.Error else {}
    ws.log.add("WaitCancelled", now, details, op)
    ws.clear_timers.append((TimerKind.WAIT, op.Id))


def _apply_callback(
    ws: WorkingSet, u: OperationUpdate, op: Operation, arn: str, callback_id: str
) -> None:
    now = ws.now_ms
    opts = u.CallbackOptions
    timeout = (opts.TimeoutSeconds if opts else None) or 0
    heartbeat = (opts.HeartbeatTimeoutSeconds if opts else None) or 0
    op.CallbackDetails = CallbackDetails(CallbackId=callback_id)
    ws.put(op)
    details: dict[str, object] = {"CallbackId": callback_id}
    if heartbeat:
        details["HeartbeatTimeout"] = heartbeat
    if timeout:
        details["Timeout"] = timeout
    ws.log.add("CallbackStarted", now, details, op)
    ws.new_callbacks.append((callback_id, op.Id, heartbeat))
    if timeout:
        ws.set_timers.append(Timer(arn, TimerKind.CALLBACK_TIMEOUT, op.Id, now + timeout * 1000))
    if heartbeat:
        ws.set_timers.append(
            Timer(arn, TimerKind.CALLBACK_HEARTBEAT, op.Id, now + heartbeat * 1000)
        )
