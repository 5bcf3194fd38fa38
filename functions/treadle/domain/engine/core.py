"""Start, drive and checkpoint: the invocation loop of ARCHITECTURE §3."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from treadle.domain.engine.base import EngineBase
from treadle.domain.engine.checkpoint import apply_update, validate_batch
from treadle.domain.engine.history import EventLog, error_payload, payload
from treadle.domain.engine.outcome import parse_outcome
from treadle.domain.engine.tokens import TokenClaims
from treadle.domain.errors import (
    AlreadyExists,
    ExecutionAlreadyStarted,
    InvalidParameter,
    InvalidToken,
    NotFound,
)
from treadle.domain.lifecycle import next_execution_status, next_operation_status
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    CheckpointRequest,
    ErrorObject,
    Execution,
    ExecutionDetails,
    ExecutionStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    Wire,
)
from treadle.domain.ports import (
    Commit,
    FunctionVersion,
    InvocationOutcome,
    Snapshot,
    StoredOperation,
    Timer,
    TimerKind,
)

log = logging.getLogger(__name__)


class CheckpointResult(Wire):
    """What a checkpoint returns; also stored whole for ClientToken idempotency."""

    CheckpointToken: str | None = None
    Operations: list[Operation] = []
    NextMarker: str | None = None


@dataclass(frozen=True)
class _Begun:
    fn: FunctionVersion
    envelope: dict[str, Any]
    generation: int
    request_id: str


def input_hash(input_payload: str | None) -> str:
    return hashlib.sha256((input_payload or "").encode()).hexdigest()


def execution_arn(fn: FunctionVersion, name: str, exec_id: str) -> str:
    return f"{fn.qualified_arn}/durable-execution/{name}/{exec_id}"


class Engine(EngineBase):
    def _chained_started(
        self, ex: Execution, ws: Any, op: Operation, update: OperationUpdate
    ) -> None:
        raise NotImplementedError  # provided by ChainedInvokes

    # -- start ---------------------------------------------------------------------

    def start(
        self,
        fn: FunctionVersion,
        name: str | None,
        input_payload: str | None,
        *,
        parent: tuple[str, str] | None = None,
        exec_id: str | None = None,
    ) -> tuple[Execution, bool]:
        """Start an execution, idempotently on its name. Returns (execution, created)."""
        digest = input_hash(input_payload)
        if name is not None:
            existing = self.store.find_by_name(fn.tenant, fn.function_name, name)
            if existing is not None:
                return self._same_start(existing, digest), False
        exec_id = exec_id or self.ids.execution_id()
        name = name or exec_id
        now = self.clock.now_ms()
        cfg = fn.durable_config
        timeout_s = (
            cfg.ExecutionTimeout if cfg else None
        ) or self.config.default_execution_timeout_s
        retention = (
            cfg.RetentionPeriodInDays if cfg else None
        ) or self.config.default_retention_days
        arn = execution_arn(fn, name, exec_id)
        ex = Execution(
            arn=arn,
            tenant=fn.tenant,
            function_name=fn.function_name,
            version=fn.version,
            name=name,
            exec_id=exec_id,
            status=ExecutionStatus(next_execution_status(None, "start")),
            input_payload=input_payload,
            input_hash=digest,
            start_ms=now,
            execution_timeout_s=timeout_s,
            retention_days=retention,
            parent_arn=parent[0] if parent else None,
            parent_op_id=parent[1] if parent else None,
            pinned_function=fn.model_dump(mode="json"),
            change_seq=1,
        )
        op = Operation(
            Id=exec_id,
            Type=OperationType.EXECUTION,
            StartTimestamp=now,
            Status=OperationStatus(next_operation_status("EXECUTION", None, "start")),
            ExecutionDetails=ExecutionDetails(InputPayload=input_payload),
        )
        events: list[Any] = []
        EventLog(1, events).add(
            "ExecutionStarted",
            now,
            {"Input": payload(input_payload), "ExecutionTimeout": timeout_s},
            op_id=exec_id,
            name=name,
        )
        ex.next_event_id = 2
        commit = Commit(
            execution=ex,
            operations=[StoredOperation(op=op, create_seq=1, change_seq=1)],
            events=events,
            set_timers=[
                Timer(arn, TimerKind.INVOKE, "", now),
                Timer(arn, TimerKind.EXECUTION_TIMEOUT, "", now + timeout_s * 1000),
            ],
        )
        try:
            self.store.create(commit)
        except AlreadyExists:
            existing = self.store.find_by_name(fn.tenant, fn.function_name, name)
            if existing is None:
                raise
            return self._same_start(existing, digest), False
        self._timers_set(commit.set_timers)
        return ex, True

    @staticmethod
    def _same_start(existing: Execution, digest: str) -> Execution:
        if existing.input_hash != digest:
            raise ExecutionAlreadyStarted(
                f"Durable execution {existing.name} already exists with a different input."
            )
        return existing

    # -- drive ---------------------------------------------------------------------

    def run_invocation(self, arn: str) -> None:
        """Take the invocation lease, invoke the pinned version, act on its result."""
        try:
            begun = self._mutate(arn, self._begin)
        except NotFound:
            return
        if begun is None:
            return
        body = json.dumps(begun.envelope).encode()
        outcome = self.runtime.invoke(begun.fn, body, begun.request_id)
        self._mutate(arn, lambda snap: self._finish(snap, begun.generation, outcome))

    def _begin(self, snap: Snapshot) -> tuple[Commit | None, _Begun | None]:
        ex, ws = self._working_set(snap)
        ws.clear_timers.append((TimerKind.INVOKE, ""))
        if ex.status in TERMINAL_EXECUTION_STATUSES or ex.paused:
            return self._commit_of(ex, ws), None
        if ex.invocation_active:
            # The lease ran out: the process that held it died mid-invocation.
            crash = ErrorObject(
                ErrorType="Runtime.ExitError",
                ErrorMessage=f"RequestId: {ex.request_id} Error: Runtime exited without "
                "providing a reason",
            )
            self._invocation_completed(ex, ws, crash)
            if self._invocation_failed(ex, ws, crash):
                return self._commit_of(ex, ws), None
        try:
            fn = self._pinned(ex)
        except NotFound:
            gone = ErrorObject(
                ErrorType="ResourceNotFoundException",
                ErrorMessage=f"Function version {ex.function_name}:{ex.version} no longer exists.",
            )
            self._close(ex, ws, ExecutionStatus.FAILED, error=gone)
            return self._commit_of(ex, ws), None
        ex.generation += 1
        ex.token_seq = 0
        ex.invocation_active = True
        ex.invocation_start_ms = ws.now_ms
        ex.request_id = self.ids.request_id()
        ex.delivered_seq = ws.change_seq
        lease_ms = (fn.timeout_s + self.config.lease_margin_s) * 1000
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms + lease_ms))
        token = self.tokens.encode(TokenClaims(ex.exec_id, ex.generation, 0))
        ops, marker = self._page(list(ws.ops.values()), 0)
        envelope = {
            "DurableExecutionArn": ex.arn,
            "CheckpointToken": token,
            "InitialExecutionState": {
                "Operations": [s.op.wire() for s in ops],
                "NextMarker": marker or "",
            },
        }
        begun = _Begun(fn, envelope, ex.generation, ex.request_id)
        return self._commit_of(ex, ws), begun

    def _pinned(self, ex: Execution) -> FunctionVersion:
        # The function must still exist; its code is the one the execution started on.
        current = self.functions.get(ex.tenant, ex.function_name, ex.version)
        if ex.pinned_function is None:
            return current
        return FunctionVersion.model_validate(ex.pinned_function)

    def _page(
        self, stored: list[StoredOperation], after_seq: int, max_items: int | None = None
    ) -> tuple[list[StoredOperation], str | None]:
        limit = min(max_items or self.config.envelope_max_operations, 1000)
        ordered = sorted(
            (s for s in stored if s.create_seq > after_seq), key=lambda s: s.create_seq
        )
        page: list[StoredOperation] = []
        size = 0
        for s in ordered:
            op_size = len(s.op.model_dump_json(exclude_none=True))
            if page and (len(page) >= limit or size + op_size > self.config.envelope_max_bytes):
                return page, str(page[-1].create_seq)
            page.append(s)
            size += op_size
        return page, None

    def _invocation_completed(self, ex: Execution, ws: Any, error: ErrorObject | None) -> None:
        details: dict[str, Any] = {
            "StartTimestamp": ex.invocation_start_ms or ws.now_ms,
            "EndTimestamp": ws.now_ms,
            "RequestId": ex.request_id or "",
        }
        if error is not None:
            details["Error"] = error_payload(error)
        ws.log.add("InvocationCompleted", ws.now_ms, details)
        ex.invocation_active = False

    def _invocation_failed(self, ex: Execution, ws: Any, error: ErrorObject) -> bool:
        """Count a failed invocation; close the execution when attempts run out."""
        if ex.closing_status is not None:
            self._close_as_checkpointed(ex, ws)
            return True
        ex.invocation_attempts += 1
        if ex.invocation_attempts >= self.config.max_invocation_attempts:
            self._close(
                ex, ws, ExecutionStatus.FAILED, error=error, trigger="invocation_retries_exhausted"
            )
            return True
        delay_ms = int(
            self.config.invocation_retry_base_s * 1000 * 2 ** (ex.invocation_attempts - 1)
        )
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms + delay_ms))
        return False

    def _close_as_checkpointed(self, ex: Execution, ws: Any) -> None:
        status = ex.closing_status
        assert status is not None
        self._close(ex, ws, status, result=ex.result, error=ex.error)

    def _finish(
        self, snap: Snapshot, generation: int, outcome: InvocationOutcome
    ) -> tuple[Commit | None, None]:
        ex, ws = self._working_set(snap)
        if ex.generation != generation or not ex.invocation_active:
            return None, None  # fenced: a stop, timeout or newer invocation won
        ws.clear_timers.append((TimerKind.INVOKE, ""))
        status, result, error, runtime_error = parse_outcome(outcome)
        self._invocation_completed(ex, ws, runtime_error)
        if runtime_error is not None:
            self._invocation_failed(ex, ws, runtime_error)
            return self._commit_of(ex, ws), None
        ex.invocation_attempts = 0
        if status == "SUCCEEDED":
            final = result if result else ex.result
            self._close(ex, ws, ExecutionStatus.SUCCEEDED, result=final)
        elif status == "FAILED":
            self._close(ex, ws, ExecutionStatus.FAILED, error=error or ex.error)
        elif ex.closing_status is not None:
            self._close_as_checkpointed(ex, ws)
        elif ex.backend_seq > ex.delivered_seq and not ex.paused:
            ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))
        return self._commit_of(ex, ws), None

    # -- checkpoint ----------------------------------------------------------------

    def checkpoint(self, arn: str, request: CheckpointRequest) -> CheckpointResult:
        claims = self.tokens.decode(request.CheckpointToken)
        if not arn.endswith("/" + claims.exec_id):
            raise InvalidToken("Invalid checkpoint token: it belongs to another execution.")
        return self._mutate(arn, lambda snap: self._checkpoint(snap, claims, request))

    def _checkpoint(
        self, snap: Snapshot, claims: TokenClaims, request: CheckpointRequest
    ) -> tuple[Commit | None, CheckpointResult]:
        ex, ws = self._working_set(snap)
        if request.ClientToken:
            stored = self.store.client_token_response(ex.arn, request.ClientToken)
            if stored is not None:
                return None, CheckpointResult.model_validate_json(stored)
        fenced = (
            claims.generation != ex.generation
            or not ex.invocation_active
            or ex.closing_status is not None
            or ex.status in TERMINAL_EXECUTION_STATUSES
        )
        if fenced:
            return None, CheckpointResult()
        if claims.seq != ex.token_seq:
            raise InvalidToken("Invalid checkpoint token: it has already been used.")
        validate_batch(request.Updates, ws.ops, ex.exec_id)
        seen = ex.delivered_seq
        for update in request.Updates:
            if update.Type is OperationType.EXECUTION:
                self._checkpoint_execution(ex, ws, update.Action, update.Payload, update.Error)
                continue
            callback_id = (
                self.ids.callback_id()
                if update.Type is OperationType.CALLBACK and update.Action is OperationAction.START
                else None
            )
            apply_update(ws, update, ex.arn, callback_id)
        for op, update in ws.chained_invokes:
            self._chained_started(ex, ws, op, update)
        ex.token_seq += 1
        changed = [s for s in ws.ops.values() if s.change_seq > seen]
        changed.sort(key=lambda s: s.change_seq)
        ex.delivered_seq = ws.change_seq
        token = None
        if ex.closing_status is None:
            token = self.tokens.encode(TokenClaims(ex.exec_id, ex.generation, ex.token_seq))
        result = CheckpointResult(CheckpointToken=token, Operations=[s.op for s in changed])
        commit = self._commit_of(ex, ws)
        if request.ClientToken:
            commit.client_token = (request.ClientToken, result.model_dump_json())
        return commit, result

    def _checkpoint_execution(
        self,
        ex: Execution,
        ws: Any,
        action: OperationAction,
        result: str | None,
        error: ErrorObject | None,
    ) -> None:
        """EXECUTION SUCCEED/FAIL: the outcome is kept; closing waits for the invocation end."""
        stored = ws.ops[ex.exec_id]
        op = stored.op.model_copy(deep=True)
        op.Status = OperationStatus(next_operation_status("EXECUTION", op.Status, action))
        op.EndTimestamp = ws.now_ms
        ws.put(op)
        if action is OperationAction.SUCCEED:
            ex.closing_status, ex.result = ExecutionStatus.SUCCEEDED, result
        else:
            ex.closing_status, ex.error = ExecutionStatus.FAILED, error

    # -- state paging --------------------------------------------------------------

    def get_state(
        self, arn: str, token: str, marker: str | None, max_items: int | None
    ) -> tuple[list[Operation], str | None]:
        claims = self.tokens.decode(token)
        ex = self.store.get(arn)
        if claims.exec_id != ex.exec_id or claims.generation != ex.generation:
            raise InvalidToken(
                "Invalid checkpoint token: it is not the current one of this execution."
            )
        try:
            after = int(marker) if marker else 0
        except ValueError:
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None
        stored = self.store.operations_page(arn, after_seq=after, limit=(max_items or 1000) + 1)
        page, next_marker = self._page(stored, after, max_items)
        return [s.op for s in page], next_marker
