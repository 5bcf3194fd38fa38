"""Control-plane requests on an execution: stop, pause, resume."""

from __future__ import annotations

from treadle.domain.engine.closing import close
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import Conflict
from treadle.domain.lifecycle import next_execution_status
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    ErrorObject,
    Execution,
    ExecutionStatus,
)
from treadle.domain.ports import Timer, TimerKind


def stop(ex: Execution, ws: WorkingSet, error: ErrorObject | None) -> int:
    """Close as STOPPED; returns when (the API reports the stop date)."""
    if ex.status in TERMINAL_EXECUTION_STATUSES:
        raise Conflict(f"Execution is already {ex.status.value}.")
    error = error or ErrorObject(
        ErrorType="Execution.Stopped", ErrorMessage="Execution stopped by request."
    )
    close(ex, ws, ExecutionStatus.STOPPED, error=error)
    return ws.now_ms


def pause(ex: Execution, ws: WorkingSet, reason: str | None, timeout_paused: bool) -> None:
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


def resume(ex: Execution, ws: WorkingSet, reason: str | None) -> None:
    ex.status = ExecutionStatus(next_execution_status(ex.status, "resume"))
    ex.paused = False
    details: dict[str, object] = {"ResumeRequestTimestamp": ws.now_ms}
    if reason:
        details["Reason"] = {"Payload": reason}
    ws.log.add("ExecutionResumed", ws.now_ms, details, op_id=ex.exec_id, name=ex.name)
    if not ex.invocation_active:
        ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))
