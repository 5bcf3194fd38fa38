"""Backend events on an execution: timers, callbacks, stop, pause/resume, delete."""

from __future__ import annotations

import logging

from treadle.domain.engine.core import Engine
from treadle.domain.engine.history import error_payload, payload
from treadle.domain.errors import CallbackTimedOut, Conflict, NotFound, PayloadTooLarge
from treadle.domain.lifecycle import next_execution_status, next_operation_status
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    ErrorObject,
    ExecutionStatus,
    OperationStatus,
)
from treadle.domain.ports import Commit, Snapshot, Timer, TimerKind

log = logging.getLogger(__name__)

MAX_CALLBACK_RESULT_BYTES = 1024 * 1024

_CALLBACK_TIMEOUTS = {
    TimerKind.CALLBACK_TIMEOUT: ("callback_timeout", "Callback.Timeout", "Callback timed out."),
    TimerKind.CALLBACK_HEARTBEAT: (
        "callback_heartbeat_timeout",
        "Callback.Heartbeat",
        "Callback heartbeat timed out.",
    ),
}


class DurableEngine(Engine):
    # -- timers --------------------------------------------------------------------

    def fire(self, timer: Timer) -> None:
        """Act on a due timer; every path clears the timer it fired."""
        if timer.kind is TimerKind.INVOKE:
            self.run_invocation(timer.arn)
            return
        if timer.kind is TimerKind.RETENTION:
            self.store.delete(timer.arn)
            return
        try:
            self._mutate(timer.arn, lambda snap: (self._fire(snap, timer), None))
        except NotFound:
            log.debug("timer of a deleted execution %s", timer.arn)

    def _fire(self, snap: Snapshot, timer: Timer) -> Commit:
        ex, ws = self._working_set(snap)
        ws.clear_timers.append((timer.kind, timer.op_id))
        if ex.status in TERMINAL_EXECUTION_STATUSES:
            return self._commit_of(ex, ws)
        if timer.kind is TimerKind.EXECUTION_TIMEOUT:
            error = ErrorObject(
                ErrorType="Execution.TimedOut",
                ErrorMessage=f"Execution timed out after {ex.execution_timeout_s} seconds.",
            )
            self._close(ex, ws, ExecutionStatus.TIMED_OUT, error=error)
            return self._commit_of(ex, ws)
        stored = ws.ops.get(timer.op_id)
        if stored is None:
            return self._commit_of(ex, ws)
        if self._compressed(timer) and ex.invocation_active:
            # A compressed (test clock) wait must not end before the invocation that
            # started it has: that order only happens in real time for long handlers.
            ws.clear_timers.clear()
            ws.set_timers.append(Timer(ex.arn, timer.kind, timer.op_id, ws.now_ms + 20))
            return self._commit_of(ex, ws)
        op = stored.op.model_copy(deep=True)
        now = ws.now_ms
        if timer.kind is TimerKind.WAIT and op.Status is OperationStatus.STARTED:
            op.Status = OperationStatus(next_operation_status("WAIT", op.Status, "wait_elapsed"))
            op.EndTimestamp = now
            ws.put(op)
            end = op.WaitDetails.ScheduledEndTimestamp if op.WaitDetails else None
            duration = round(((end or now) - op.StartTimestamp) / 1000)
            ws.log.add("WaitSucceeded", now, {"Duration": duration}, op)
            self._request_invocation(ex, ws)
        elif timer.kind is TimerKind.RETRY and op.Status is OperationStatus.PENDING:
            op.Status = OperationStatus(next_operation_status("STEP", op.Status, "retry_due"))
            ws.put(op)
            self._request_invocation(ex, ws)
        elif timer.kind in _CALLBACK_TIMEOUTS and op.Status is OperationStatus.STARTED:
            trigger, error_type, message = _CALLBACK_TIMEOUTS[timer.kind]
            error = ErrorObject(ErrorType=error_type, ErrorMessage=message)
            op.Status = OperationStatus(next_operation_status("CALLBACK", op.Status, trigger))
            op.EndTimestamp = now
            if op.CallbackDetails is not None:
                op.CallbackDetails.Error = error
            ws.put(op)
            ws.log.add("CallbackTimedOut", now, {"Error": error_payload(error)}, op)
            ws.clear_timers.append((TimerKind.CALLBACK_TIMEOUT, op.Id))
            ws.clear_timers.append((TimerKind.CALLBACK_HEARTBEAT, op.Id))
            self._request_invocation(ex, ws)
        return self._commit_of(ex, ws)

    def _compressed(self, timer: Timer) -> bool:
        return self.config.wait_time_scale < 1.0 and timer.kind in (
            TimerKind.WAIT,
            TimerKind.RETRY,
        )

    def recover(self) -> int:
        """After a restart: invocations that were running died with the old process."""
        arns = self.store.active_invocations()
        now = self.clock.now_ms()
        for arn in arns:
            self._mutate(arn, lambda snap: (self._expire_lease(snap, now), None))
        return len(arns)

    def _expire_lease(self, snap: Snapshot, now: int) -> Commit | None:
        ex, ws = self._working_set(snap)
        if not ex.invocation_active:
            return None
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", now))
        return self._commit_of(ex, ws)

    # -- callbacks -----------------------------------------------------------------

    def _callback_target(self, tenant: str, callback_id: str) -> tuple[str, str, int]:
        owner = self.store.callback_owner(callback_id)
        # The account field of the ARN, exactly: a substring test could match a name.
        if owner is None or owner[0].split(":")[4:5] != [tenant]:
            raise NotFound(f"Callback {callback_id} not found.")
        return owner

    def complete_callback(
        self,
        tenant: str,
        callback_id: str,
        *,
        result: str | None = None,
        error: ErrorObject | None = None,
    ) -> None:
        arn, op_id, _ = self._callback_target(tenant, callback_id)
        if result is not None and len(result.encode()) > MAX_CALLBACK_RESULT_BYTES:
            raise PayloadTooLarge(f"Callback result exceeds {MAX_CALLBACK_RESULT_BYTES} bytes.")
        succeeded = error is None
        self._mutate(
            arn, lambda snap: (self._complete(snap, op_id, succeeded, result, error), None)
        )

    def _open_callback(self, snap: Snapshot, op_id: str) -> None:
        stored = snap.operations.get(op_id)
        if snap.execution.status in TERMINAL_EXECUTION_STATUSES or stored is None:
            raise CallbackTimedOut("The callback is no longer open: its execution has ended.")
        if stored.op.Status is not OperationStatus.STARTED:
            raise CallbackTimedOut(
                f"The callback is no longer open: it is {stored.op.Status.value}."
            )

    def _complete(
        self,
        snap: Snapshot,
        op_id: str,
        succeeded: bool,
        result: str | None,
        error: ErrorObject | None,
    ) -> Commit:
        self._open_callback(snap, op_id)
        ex, ws = self._working_set(snap)
        op = ws.ops[op_id].op.model_copy(deep=True)
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
        ws.clear_timers.append((TimerKind.CALLBACK_TIMEOUT, op_id))
        ws.clear_timers.append((TimerKind.CALLBACK_HEARTBEAT, op_id))
        self._request_invocation(ex, ws)
        return self._commit_of(ex, ws)

    def heartbeat_callback(self, tenant: str, callback_id: str) -> None:
        arn, op_id, heartbeat_s = self._callback_target(tenant, callback_id)
        self._mutate(arn, lambda snap: (self._heartbeat(snap, op_id, heartbeat_s), None))

    def _heartbeat(self, snap: Snapshot, op_id: str, heartbeat_s: int) -> Commit | None:
        self._open_callback(snap, op_id)
        if not heartbeat_s:
            return None
        ex, ws = self._working_set(snap)
        due = ws.now_ms + heartbeat_s * 1000
        ws.set_timers.append(Timer(ex.arn, TimerKind.CALLBACK_HEARTBEAT, op_id, due))
        return self._commit_of(ex, ws)

    # -- control plane -------------------------------------------------------------

    def stop(self, arn: str, error: ErrorObject | None) -> int:
        return self._mutate(arn, lambda snap: self._stop(snap, error))

    def _stop(self, snap: Snapshot, error: ErrorObject | None) -> tuple[Commit, int]:
        ex, ws = self._working_set(snap)
        if ex.status in TERMINAL_EXECUTION_STATUSES:
            raise Conflict(f"Execution is already {ex.status.value}.")
        error = error or ErrorObject(
            ErrorType="Execution.Stopped", ErrorMessage="Execution stopped by request."
        )
        self._close(ex, ws, ExecutionStatus.STOPPED, error=error)
        return self._commit_of(ex, ws), ws.now_ms

    def pause(self, arn: str, reason: str | None, timeout_paused: bool) -> None:
        self._mutate(arn, lambda snap: (self._pause(snap, reason, timeout_paused), None))

    def _pause(self, snap: Snapshot, reason: str | None, timeout_paused: bool) -> Commit:
        ex, ws = self._working_set(snap)
        ex.status = ExecutionStatus(next_execution_status(ex.status, "pause"))
        ex.paused = True
        details: dict[str, object] = {
            "PauseRequestTimestamp": ws.now_ms,
            "ExecutionTimeoutPaused": timeout_paused,
        }
        if reason:
            details["Reason"] = {"Payload": reason}
        ws.log.add("ExecutionPaused", ws.now_ms, details, op_id=ex.exec_id, name=ex.name)
        if not ex.invocation_active:
            ws.clear_timers.append((TimerKind.INVOKE, ""))
        return self._commit_of(ex, ws)

    def resume(self, arn: str, reason: str | None) -> None:
        self._mutate(arn, lambda snap: (self._resume(snap, reason), None))

    def _resume(self, snap: Snapshot, reason: str | None) -> Commit:
        ex, ws = self._working_set(snap)
        ex.status = ExecutionStatus(next_execution_status(ex.status, "resume"))
        ex.paused = False
        details: dict[str, object] = {"ResumeRequestTimestamp": ws.now_ms}
        if reason:
            details["Reason"] = {"Payload": reason}
        ws.log.add("ExecutionResumed", ws.now_ms, details, op_id=ex.exec_id, name=ex.name)
        if not ex.invocation_active:
            ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))
        return self._commit_of(ex, ws)

    def delete(self, arn: str) -> int:
        with self._lock(arn):
            ex = self.store.get(arn)
            if ex.status not in TERMINAL_EXECUTION_STATUSES:
                raise Conflict("Only a closed execution can be deleted; stop it first.")
            self.store.delete(arn)
        return self.clock.now_ms()
