"""Validation and application of one checkpoint batch (PROTOCOL.md, "Checkpoint").

`validate_batch` checks every rule before anything is applied; `apply_update` turns one
accepted update into the operation's new state, its history event and its timers.
Both work on an in-memory working set that becomes one atomic commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.domain.engine.history import EventLog, error_payload, payload, retry_details
from treadle.domain.errors import InvalidParameter, PayloadTooLarge
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    CallbackDetails,
    ContextDetails,
    ErrorObject,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    StepDetails,
    WaitDetails,
)
from treadle.domain.ports import StoredOperation, Timer, TimerKind

# The SDK's own limit per operation payload; a larger one is refused, not truncated.
MAX_OPERATION_PAYLOAD_BYTES = 256 * 1024
MAX_ERROR_BYTES = 256 * 1024
MAX_UPDATES_PER_BATCH = 1000

_ALLOWED_ACTIONS: dict[OperationType, frozenset[OperationAction]] = {
    OperationType.STEP: frozenset(
        {
            OperationAction.START,
            OperationAction.SUCCEED,
            OperationAction.FAIL,
            OperationAction.RETRY,
        }
    ),
    OperationType.CONTEXT: frozenset(
        {OperationAction.START, OperationAction.SUCCEED, OperationAction.FAIL}
    ),
    OperationType.WAIT: frozenset({OperationAction.START, OperationAction.CANCEL}),
    OperationType.CALLBACK: frozenset({OperationAction.START}),
    OperationType.CHAINED_INVOKE: frozenset({OperationAction.START}),
    OperationType.EXECUTION: frozenset({OperationAction.SUCCEED, OperationAction.FAIL}),
}


def _size(text: str | None) -> int:
    return len(text.encode()) if text else 0


def validate_batch(
    updates: list[OperationUpdate], existing: dict[str, StoredOperation], exec_op_id: str
) -> None:
    if len(updates) > MAX_UPDATES_PER_BATCH:
        raise InvalidParameter(f"A checkpoint holds at most {MAX_UPDATES_PER_BATCH} updates.")
    execution_updates = [u for u in updates if u.Type is OperationType.EXECUTION]
    if len(execution_updates) > 1:
        raise InvalidParameter("Cannot checkpoint multiple EXECUTION updates.")
    if execution_updates and updates[-1].Type is not OperationType.EXECUTION:
        raise InvalidParameter("EXECUTION checkpoint must be the last update.")

    started: dict[str, OperationUpdate] = {}
    last_seen: dict[str, OperationUpdate] = {}
    for u in updates:
        if u.Action not in _ALLOWED_ACTIONS[u.Type]:
            raise InvalidParameter(f"Invalid action {u.Action} for {u.Type} operation {u.Id}.")
        previous = last_seen.get(u.Id)
        if previous is not None:
            pair_ok = (
                previous.Type in (OperationType.STEP, OperationType.CONTEXT)
                and previous.Action is OperationAction.START
                and u.Action is not OperationAction.START
            )
            if not pair_ok:
                raise InvalidParameter(
                    f"Cannot checkpoint multiple operations with the same ID {u.Id}."
                )
        if u.ParentId is not None:
            parent_type = (
                started[u.ParentId].Type
                if u.ParentId in started
                else existing[u.ParentId].op.Type
                if u.ParentId in existing
                else None
            )
            if parent_type is not OperationType.CONTEXT:
                raise InvalidParameter(f"Invalid parent operation id {u.ParentId} for {u.Id}.")
        current = existing.get(u.Id)
        if u.Type is OperationType.EXECUTION and u.Id != exec_op_id:
            raise InvalidParameter(f"EXECUTION update must use the execution's id {exec_op_id}.")
        if current is not None:
            _check_consistent(u, current.op)
        _check_contents(u)
        if u.Action is OperationAction.START:
            started[u.Id] = u
        last_seen[u.Id] = u


def _check_consistent(u: OperationUpdate, op: Operation) -> None:
    if u.Type is not op.Type:
        raise InvalidParameter(f"Inconsistent operation type for {u.Id}.")
    if u.SubType is not None and u.SubType != op.SubType:
        raise InvalidParameter(f"Inconsistent operation subtype for {u.Id}.")
    if u.Name is not None and u.Name != op.Name:
        raise InvalidParameter(f"Inconsistent operation name for {u.Id}.")
    if u.ParentId is not None and u.ParentId != op.ParentId:
        raise InvalidParameter(f"Inconsistent parent operation id for {u.Id}.")


def _check_contents(u: OperationUpdate) -> None:
    if _size(u.Payload) > MAX_OPERATION_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"Payload of operation {u.Id} exceeds {MAX_OPERATION_PAYLOAD_BYTES} bytes."
        )
    if u.Error is not None and len(u.Error.model_dump_json()) > MAX_ERROR_BYTES:
        raise PayloadTooLarge(f"Error of operation {u.Id} exceeds {MAX_ERROR_BYTES} bytes.")
    if u.Action is OperationAction.FAIL and u.Payload is not None:
        raise InvalidParameter(f"Cannot provide a Payload for FAIL action ({u.Id}).")
    if u.Action is OperationAction.SUCCEED and u.Error is not None:
        raise InvalidParameter(f"Cannot provide an Error for SUCCEED action ({u.Id}).")
    wait_start = u.Type is OperationType.WAIT and u.Action is OperationAction.START
    if wait_start and (u.WaitOptions is None or not u.WaitOptions.WaitSeconds):
        raise InvalidParameter(f"WAIT START of {u.Id} requires WaitOptions.WaitSeconds >= 1.")
    if u.Type is OperationType.STEP and u.Action is OperationAction.RETRY:
        if u.StepOptions is None:
            raise InvalidParameter(f"STEP RETRY of {u.Id} requires StepOptions.")
        if u.Error is not None and u.Payload is not None:
            raise InvalidParameter(f"Cannot provide both Error and Payload to RETRY {u.Id}.")
    if u.Type is OperationType.CHAINED_INVOKE and u.ChainedInvokeOptions is None:
        raise InvalidParameter(f"CHAINED_INVOKE START of {u.Id} requires ChainedInvokeOptions.")


@dataclass
class WorkingSet:
    """Changes of one commit, accumulated update by update."""

    now_ms: int
    change_seq: int
    create_seq: int
    ops: dict[str, StoredOperation]
    log: EventLog
    changed: dict[str, StoredOperation] = field(default_factory=dict)
    set_timers: list[Timer] = field(default_factory=list)
    clear_timers: list[tuple[TimerKind, str]] = field(default_factory=list)
    new_callbacks: list[tuple[str, str, int]] = field(default_factory=list)
    chained_invokes: list[tuple[Operation, OperationUpdate]] = field(default_factory=list)
    clear_all_timers: bool = False

    def put(self, op: Operation) -> StoredOperation:
        self.change_seq += 1
        stored = self.ops.get(op.Id)
        if stored is None:
            self.create_seq += 1
            stored = StoredOperation(op=op, create_seq=self.create_seq, change_seq=self.change_seq)
        else:
            stored = StoredOperation(
                op=op, create_seq=stored.create_seq, change_seq=self.change_seq
            )
        self.ops[op.Id] = stored
        self.changed[op.Id] = stored
        return stored


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
    op = current.model_copy(deep=True) if current else _new_op(u, status, now)
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


def timeout_error(kind: str, message: str) -> ErrorObject:
    return ErrorObject(ErrorType=kind, ErrorMessage=message)
