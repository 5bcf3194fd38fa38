"""Chained invokes: an execution starts another function and waits for its outcome.

Both directions go through timer rows written in the same transaction as the change
that needs them (an outbox): the parent's checkpoint writes CHAINED_START, the child's
close writes CHILD_DONE on the parent. A crash between the two executions' commits
therefore loses nothing; the child's id is derived from (parent, operation), so
starting it again is idempotent.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from treadle.domain.engine.checkpoint import WorkingSet
from treadle.domain.engine.control import DurableEngine
from treadle.domain.engine.history import error_payload, payload
from treadle.domain.errors import NotFound
from treadle.domain.lifecycle import next_operation_status
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    ChainedInvokeDetails,
    ErrorObject,
    Execution,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationUpdate,
)
from treadle.domain.ports import Commit, Snapshot, Timer, TimerKind

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("5f0c2d3e-8a4b-4c55-9a1e-7d4f3c2b1a00")
_CHILD_OUTCOMES = {
    ExecutionStatus.SUCCEEDED: ("child_succeeded", "ChainedInvokeSucceeded"),
    ExecutionStatus.FAILED: ("child_failed", "ChainedInvokeFailed"),
    ExecutionStatus.TIMED_OUT: ("child_timed_out", "ChainedInvokeTimedOut"),
    ExecutionStatus.STOPPED: ("child_stopped", "ChainedInvokeStopped"),
}


def child_execution_id(parent_arn: str, op_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{parent_arn}#{op_id}"))


def _split_ref(ref: str) -> tuple[str, str | None]:
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


class ChainedEngine(DurableEngine):
    def _chained_started(
        self, ex: Execution, ws: Any, op: Operation, update: OperationUpdate
    ) -> None:
        assert isinstance(ws, WorkingSet) and update.ChainedInvokeOptions is not None
        opts = update.ChainedInvokeOptions
        name, qualifier = _split_ref(opts.FunctionName)
        details: dict[str, Any] = {"FunctionName": opts.FunctionName}
        if opts.TenantId:
            details["TenantId"] = opts.TenantId
        details["Input"] = payload(update.Payload)
        try:
            target = self.functions.get(ex.tenant, name, qualifier or "$LATEST")
        except NotFound as exc:
            ws.log.add("ChainedInvokeStarted", ws.now_ms, details, op)
            error = ErrorObject(ErrorType="ResourceNotFoundException", ErrorMessage=exc.message)
            self._settle(ex, ws, op, "child_failed", "ChainedInvokeFailed", None, error)
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
        self,
        ex: Execution,
        ws: WorkingSet,
        op: Operation,
        trigger: str,
        event_type: str,
        result: str | None,
        error: ErrorObject | None,
    ) -> None:
        op = op.model_copy(deep=True)
        op.Status = OperationStatus(next_operation_status("CHAINED_INVOKE", op.Status, trigger))
        op.EndTimestamp = ws.now_ms
        op.ChainedInvokeDetails = ChainedInvokeDetails(Result=result, Error=error)
        ws.put(op)
        if event_type == "ChainedInvokeSucceeded":
            details = {"Result": payload(result)}
        else:
            details = {"Error": error_payload(error)}
        ws.log.add(event_type, ws.now_ms, details, op)
        self._request_invocation(ex, ws)

    # -- timers ----------------------------------------------------------------------

    def fire(self, timer: Timer) -> None:
        if timer.kind is TimerKind.CHAINED_START:
            self._start_child(timer)
        elif timer.kind is TimerKind.CHILD_DONE:
            self._mutate(timer.arn, lambda snap: (self._child_done(snap, timer), None))
        else:
            super().fire(timer)

    def _start_child(self, timer: Timer) -> None:
        parent = self.store.get(timer.arn)
        started = self.store.find_event(timer.arn, timer.op_id, "ChainedInvokeStarted")
        if started is None or parent.status in TERMINAL_EXECUTION_STATUSES:
            self._clear(timer)
            return
        details = (started.model_extra or {}).get("ChainedInvokeStartedDetails", {})
        name, qualifier = _split_ref(details["FunctionName"])
        input_payload = details.get("Input", {}).get("Payload")
        try:
            target = self.functions.get(parent.tenant, name, qualifier or "$LATEST")
        except NotFound as exc:
            error = ErrorObject(ErrorType="ResourceNotFoundException", ErrorMessage=exc.message)
            self._mutate(timer.arn, lambda snap: (self._outcome(snap, timer, None, error), None))
            return
        if target.durable:
            child_id = child_execution_id(parent.arn, timer.op_id)
            self.start(
                target, child_id, input_payload, parent=(parent.arn, timer.op_id), exec_id=child_id
            )
            self._clear(timer)
            return
        # A plain function: run it now and settle the operation with its outcome.
        outcome = self.runtime.invoke(
            target, (input_payload or "null").encode(), self.ids.request_id()
        )
        if outcome.error is not None:
            err = outcome.error
            error = ErrorObject(
                ErrorType=str(err.get("errorType", "Error")),
                ErrorMessage=str(err.get("errorMessage", "")),
            )
            self._mutate(timer.arn, lambda snap: (self._outcome(snap, timer, None, error), None))
        else:
            result = (outcome.payload or b"null").decode()
            self._mutate(timer.arn, lambda snap: (self._outcome(snap, timer, result, None), None))

    def _clear(self, timer: Timer) -> None:
        def change(snap: Snapshot) -> tuple[Commit, None]:
            ex, ws = self._working_set(snap)
            ws.clear_timers.append((timer.kind, timer.op_id))
            return self._commit_of(ex, ws), None

        self._mutate(timer.arn, change)

    def _outcome(
        self, snap: Snapshot, timer: Timer, result: str | None, error: ErrorObject | None
    ) -> Commit:
        ex, ws = self._working_set(snap)
        ws.clear_timers.append((timer.kind, timer.op_id))
        stored = ws.ops.get(timer.op_id)
        if stored is not None and stored.op.Status is OperationStatus.STARTED:
            if error is None:
                self._settle(
                    ex, ws, stored.op, "child_succeeded", "ChainedInvokeSucceeded", result, None
                )
            else:
                self._settle(ex, ws, stored.op, "child_failed", "ChainedInvokeFailed", None, error)
        return self._commit_of(ex, ws)

    def _child_done(self, snap: Snapshot, timer: Timer) -> Commit:
        ex, ws = self._working_set(snap)
        if ex.invocation_active:
            # The parent is still running the invocation that started the child (it is
            # about to suspend): record the outcome after that invocation's end, so
            # its history reads invoke, invocation end, outcome, as on AWS.
            ws.set_timers.append(Timer(ex.arn, TimerKind.CHILD_DONE, timer.op_id, ws.now_ms + 20))
            return self._commit_of(ex, ws)
        ws.clear_timers.append((timer.kind, timer.op_id))
        stored = ws.ops.get(timer.op_id)
        if stored is None or stored.op.Status is not OperationStatus.STARTED:
            return self._commit_of(ex, ws)
        child_arn = self._child_arn(ex, timer.op_id)
        try:
            child = self.store.get(child_arn) if child_arn else None
        except NotFound:
            child = None
        if child is None or child.status not in _CHILD_OUTCOMES:
            return self._commit_of(ex, ws)
        trigger, event_type = _CHILD_OUTCOMES[child.status]
        self._settle(ex, ws, stored.op, trigger, event_type, child.result, child.error)
        return self._commit_of(ex, ws)

    def _child_arn(self, ex: Execution, op_id: str) -> str | None:
        started = self.store.find_event(ex.arn, op_id, "ChainedInvokeStarted")
        if started is None:
            return None
        details = (started.model_extra or {}).get("ChainedInvokeStartedDetails", {})
        arn = details.get("DurableExecutionArn")
        return str(arn) if arn else None
