"""One checkpoint batch (PROTOCOL.md, "Checkpoint"): fenced, validated, then applied.

`validate_batch` checks every rule before anything is applied; `apply_checkpoint`
applies an accepted batch to the working set (each operation by `updates.apply_update`)
and answers with the next token and the operations the handler has not seen.
"""

from __future__ import annotations

from treadle.domain.engine import events, limits
from treadle.domain.engine.chained import chained_started
from treadle.domain.engine.closing import close
from treadle.domain.engine.invocation import invocation_completed
from treadle.domain.engine.tokens import TokenClaims, TokenCodec
from treadle.domain.engine.updates import apply_update
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import InvalidParameter, InvalidToken, PayloadTooLarge
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    TERMINAL_EXECUTION_STATUSES,
    CheckpointRequest,
    ErrorObject,
    Execution,
    ExecutionStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    Wire,
)
from treadle.domain.ports import FunctionStore, Ids, StoredOperation

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
    updates: list[OperationUpdate],
    existing: dict[str, StoredOperation],
    exec_op_id: str,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
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
        _check_contents(u, max_payload_bytes)
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


def _check_contents(u: OperationUpdate, max_payload_bytes: int) -> None:
    # Refused as AWS refuses it (400 InvalidParameterValueException): the SDK then fails
    # the execution itself. A payload is an operation's result or its error object.
    if _size(u.Payload) > max_payload_bytes:
        raise PayloadTooLarge(
            f"Payload of operation {u.Id} exceeds {max_payload_bytes} bytes"
            f" ({_size(u.Payload)} bytes)."
        )
    if u.Error is not None and limits.update_bytes(u) > max_payload_bytes:
        raise PayloadTooLarge(f"Error of operation {u.Id} exceeds {max_payload_bytes} bytes.")
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


class CheckpointResult(Wire):
    """What a checkpoint returns; also stored whole for ClientToken idempotency."""

    CheckpointToken: str | None = None
    Operations: list[Operation] = []
    NextMarker: str | None = None


def apply_checkpoint(
    ex: Execution,
    ws: WorkingSet,
    claims: TokenClaims,
    request: CheckpointRequest,
    *,
    functions: FunctionStore,
    ids: Ids,
    tokens: TokenCodec,
) -> CheckpointResult:
    fenced = (
        claims.generation != ex.generation
        or not ex.invocation_active
        or ex.closing_status is not None
        or ex.status in TERMINAL_EXECUTION_STATUSES
    )
    if fenced:
        return CheckpointResult()
    if claims.seq != ex.token_seq:
        raise InvalidToken("Invalid checkpoint token: it has already been used.")
    validate_batch(request.Updates, ws.ops, ex.exec_id, ex.limits.max_payload_bytes)
    over = limits.exceeded(ex, *limits.batch_cost(request.Updates, ws.ops))
    if over is not None:
        # The invocation ends here (its tokens are fenced by the close), so its
        # InvocationCompleted comes before ExecutionFailed, as for any other end.
        invocation_completed(ex, ws, None)
        close(ex, ws, ExecutionStatus.FAILED, error=over, trigger="limit_exceeded")
        return CheckpointResult()
    seen = ex.delivered_seq
    for update in request.Updates:
        if update.Type is OperationType.EXECUTION:
            _checkpoint_execution(ex, ws, update.Action, update.Payload, update.Error)
            continue
        callback_id = (
            ids.callback_id()
            if update.Type is OperationType.CALLBACK and update.Action is OperationAction.START
            else None
        )
        apply_update(ws, update, ex.arn, callback_id)
        if callback_id is not None:
            # A wait for an event that is already buffered ends in this same commit.
            events.take_buffered(ex, ws, update.Id)
    for op, update in ws.chained_invokes:
        chained_started(ex, ws, op, update, functions)
    ex.token_seq += 1
    changed = [s for s in ws.ops.values() if s.change_seq > seen]
    changed.sort(key=lambda s: s.change_seq)
    ex.delivered_seq = ws.change_seq
    token = None
    if ex.closing_status is None:
        token = tokens.encode(TokenClaims(ex.exec_id, ex.generation, ex.token_seq))
    result = CheckpointResult(CheckpointToken=token, Operations=[s.op for s in changed])
    if request.ClientToken:
        ws.client_token = (request.ClientToken, result.model_dump_json())
    return result


def _checkpoint_execution(
    ex: Execution,
    ws: WorkingSet,
    action: OperationAction,
    result: str | None,
    error: ErrorObject | None,
) -> None:
    """EXECUTION SUCCEED/FAIL: the outcome is kept; closing waits for the invocation end."""
    stored = ws.ops[ex.exec_id]
    op = stored.op.deep_copy()
    op.Status = OperationStatus(next_operation_status("EXECUTION", op.Status, action))
    op.EndTimestamp = ws.now_ms
    ws.put(op)
    if action is OperationAction.SUCCEED:
        ex.closing_status, ex.result = ExecutionStatus.SUCCEEDED, result
    else:
        ex.closing_status, ex.error = ExecutionStatus.FAILED, error
