"""One invocation of the handler: take the lease, build the envelope, act on the outcome.

ARCHITECTURE §3 "drive": `begin` takes the lease (a new token generation) and builds
the envelope; `finish` acts on what the invocation returned; an invocation that
failed is retried with backoff until the attempts run out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from treadle.domain.engine.closing import close, close_as_checkpointed
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.history import error_payload
from treadle.domain.engine.outcome import parse_outcome
from treadle.domain.engine.tokens import TokenClaims, TokenCodec
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import NotFound
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    ErrorObject,
    Execution,
    ExecutionStatus,
)
from treadle.domain.ports import (
    FunctionStore,
    FunctionVersion,
    Ids,
    InvocationOutcome,
    StoredOperation,
    Timer,
    TimerKind,
)


@dataclass(frozen=True)
class Begun:
    """An invocation whose lease is taken: what to invoke, with what (the envelope as
    JSON: it may wait in a backlog of thousands), under which lease."""

    fn: FunctionVersion
    payload: bytes
    generation: int
    request_id: str


def begin(
    ex: Execution,
    ws: WorkingSet,
    *,
    functions: FunctionStore,
    ids: Ids,
    tokens: TokenCodec,
    config: EngineConfig,
    due_ms: int | None = None,
    queued: bool = False,
) -> Begun | None:
    """Take the invocation lease; None if there is nothing to invoke.

    `due_ms` is the due time of the INVOKE timer that fired (None: not a timer's).
    `queued`: the invocation will wait in memory behind others (`Execution.lease_queued`).
    """
    if (
        ex.invocation_active
        and not ex.lease_queued
        and due_ms is not None
        and due_ms <= (ex.invocation_start_ms or 0)
    ):
        # A copy of the timer that started the running invocation (SQS delivers at least
        # once, a copy even while the first is being handled): its lease has not run
        # out. Every timer that ends a lease is due after the invocation began.
        return None
    ws.clear_timers.append((TimerKind.INVOKE, ""))
    if ex.invocation_active and ex.lease_queued:
        # The process that queued it is gone (its memory with it): nothing ran under it
        # that the platform can blame on the handler.
        ex.invocation_active = ex.lease_queued = False
    if ex.status in TERMINAL_EXECUTION_STATUSES or ex.paused:
        return None
    if ex.invocation_active:
        # The lease ran out: the process that held it died mid-invocation.
        crash = ErrorObject(
            ErrorType="Runtime.ExitError",
            ErrorMessage=f"RequestId: {ex.request_id} Error: Runtime exited without "
            "providing a reason",
        )
        invocation_completed(ex, ws, crash)
        if invocation_failed(ex, ws, crash, config):
            return None
    try:
        fn = _pinned(ex, functions)
    except NotFound:
        gone = ErrorObject(
            ErrorType="ResourceNotFoundException",
            ErrorMessage=f"Function version {ex.function_name}:{ex.version} no longer exists.",
        )
        close(ex, ws, ExecutionStatus.FAILED, error=gone)
        return None
    ex.generation += 1
    ex.token_seq = 0
    ex.invocation_active = True
    ex.lease_queued = queued
    ex.invocation_start_ms = ws.now_ms
    ex.request_id = ids.request_id()
    ex.delivered_seq = ws.change_seq
    lease_ms = (fn.timeout_s + config.lease_margin_s) * 1000
    if queued:
        lease_ms += config.queued_lease_allowance_s * 1000
    ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms + lease_ms))
    token = tokens.encode(TokenClaims(ex.exec_id, ex.generation, 0))
    ops, marker = page(list(ws.ops.values()), 0, config)
    envelope = {
        "DurableExecutionArn": ex.arn,
        "CheckpointToken": token,
        "InitialExecutionState": {
            "Operations": [s.op.wire() for s in ops],
            "NextMarker": marker or "",
        },
    }
    return Begun(fn, json.dumps(envelope).encode(), ex.generation, ex.request_id)


def _pinned(ex: Execution, functions: FunctionStore) -> FunctionVersion:
    # The function must still exist; its code is the one the execution started on.
    current = functions.get(ex.tenant, ex.function_name, ex.version)
    pinned = ex.pinned_function
    if pinned is None or pinned.get("revision_id") == current.revision_id:
        # The same revision of the same version is the same document (every change of
        # code or configuration takes a new revision, as Lambda's RevisionId): the
        # store's copy, shared, rather than one built per invocation.
        return current
    return FunctionVersion.model_validate(pinned)


def page(
    stored: list[StoredOperation],
    after_seq: int,
    config: EngineConfig,
    max_items: int | None = None,
) -> tuple[list[StoredOperation], str | None]:
    """Operations created after `after_seq`, within the envelope's limits, and a marker."""
    limit = min(max_items or config.envelope_max_operations, 1000)
    ordered = sorted((s for s in stored if s.create_seq > after_seq), key=lambda s: s.create_seq)
    result: list[StoredOperation] = []
    size = 0
    for s in ordered:
        op_size = len(s.op.model_dump_json(exclude_none=True))
        if result and (len(result) >= limit or size + op_size > config.envelope_max_bytes):
            return result, str(result[-1].create_seq)
        result.append(s)
        size += op_size
    return result, None


def invocation_completed(ex: Execution, ws: WorkingSet, error: ErrorObject | None) -> None:
    details: dict[str, Any] = {
        "StartTimestamp": ex.invocation_start_ms or ws.now_ms,
        "EndTimestamp": ws.now_ms,
        "RequestId": ex.request_id or "",
    }
    if error is not None:
        details["Error"] = error_payload(error)
    ws.log.add("InvocationCompleted", ws.now_ms, details)
    ex.invocation_active = False


def invocation_failed(
    ex: Execution, ws: WorkingSet, error: ErrorObject, config: EngineConfig
) -> bool:
    """Count a failed invocation; close the execution when attempts run out."""
    if ex.closing_status is not None:
        close_as_checkpointed(ex, ws)
        return True
    ex.invocation_attempts += 1
    if ex.invocation_attempts >= config.max_invocation_attempts:
        close(ex, ws, ExecutionStatus.FAILED, error=error, trigger="invocation_retries_exhausted")
        return True
    ws.operations_added += 1  # an invocation-level retry is a durable operation to AWS
    delay_ms = int(config.invocation_retry_base_s * 1000 * 2 ** (ex.invocation_attempts - 1))
    ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms + delay_ms))
    return False


def finish(
    ex: Execution,
    ws: WorkingSet,
    generation: int,
    outcome: InvocationOutcome,
    config: EngineConfig,
    started_ms: int | None = None,
) -> None:
    """Act on what the invocation of lease `generation` returned (`started_ms`: when it
    left the lane's queue, for a lease taken before)."""
    if ex.generation != generation or not ex.invocation_active:
        return  # fenced: a stop, timeout or newer invocation won
    ws.clear_timers.append((TimerKind.INVOKE, ""))
    if ex.lease_queued:
        ex.lease_queued = False
        if started_ms is not None:  # its InvocationCompleted says when it ran
            ex.invocation_start_ms = started_ms
    status, result, error, runtime_error = parse_outcome(outcome)
    invocation_completed(ex, ws, runtime_error)
    if runtime_error is not None:
        invocation_failed(ex, ws, runtime_error, config)
        return
    ex.invocation_attempts = 0
    if status == "SUCCEEDED":
        final = result if result else ex.result
        close(ex, ws, ExecutionStatus.SUCCEEDED, result=final)
    elif status == "FAILED":
        close(ex, ws, ExecutionStatus.FAILED, error=error or ex.error)
    elif ex.closing_status is not None:
        close_as_checkpointed(ex, ws)
    elif ex.backend_seq > ex.delivered_seq and not ex.paused:
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))


def not_started(ex: Execution, ws: WorkingSet, generation: int, config: EngineConfig) -> None:
    """The runtime refused lease `generation`'s invocation (throttled, unreachable):
    the lease goes back now and the invocation is tried again after the first retry
    delay. Holding the lease would wait out the function's whole timeout and then count
    a crash, a failed attempt, for a handler that never ran; if it did run after all
    (an answer lost), its checkpoints are fenced by the generation."""
    if ex.generation != generation or not ex.invocation_active:
        return
    ws.clear_timers.append((TimerKind.INVOKE, ""))
    ex.invocation_active = ex.lease_queued = False
    delay_ms = int(config.invocation_retry_base_s * 1000)
    ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms + delay_ms))


def expire_lease(ex: Execution, ws: WorkingSet, now_ms: int) -> None:
    """After a restart: an invocation that was running died with the old process; one
    still queued behind others (`lease_queued`) is given back, no crash counted."""
    if ex.invocation_active and ex.lease_queued:
        ex.invocation_active = ex.lease_queued = False
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", now_ms))
    elif ex.invocation_active:
        # Due after the invocation began, as `begin` tells a lease's end by that.
        due = max(now_ms, (ex.invocation_start_ms or 0) + 1)
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", due))
