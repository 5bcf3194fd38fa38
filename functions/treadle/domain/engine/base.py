"""Shared machinery of the engine: per-execution serialisation, commits, closing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from treadle.domain.dispatch import Dispatcher
from treadle.domain.engine.checkpoint import WorkingSet
from treadle.domain.engine.history import EventLog, error_payload, payload
from treadle.domain.engine.tokens import TokenCodec
from treadle.domain.errors import ConcurrentModification
from treadle.domain.lifecycle import next_execution_status, next_operation_status
from treadle.domain.models import (
    ErrorObject,
    Execution,
    ExecutionStatus,
    OperationStatus,
)
from treadle.domain.ports import (
    Clock,
    Commit,
    CompletionListener,
    ExecutionStore,
    FunctionRuntime,
    FunctionStore,
    Ids,
    Scheduler,
    Snapshot,
    Timer,
    TimerKind,
)

log = logging.getLogger(__name__)

R = TypeVar("R")

_CLOSE_EVENTS = {
    ExecutionStatus.SUCCEEDED: "ExecutionSucceeded",
    ExecutionStatus.FAILED: "ExecutionFailed",
    ExecutionStatus.TIMED_OUT: "ExecutionTimedOut",
    ExecutionStatus.STOPPED: "ExecutionStopped",
}
_CLOSE_TRIGGERS = {
    ExecutionStatus.SUCCEEDED: "handler_succeeded",
    ExecutionStatus.FAILED: "handler_failed",
    ExecutionStatus.TIMED_OUT: "execution_timeout",
    ExecutionStatus.STOPPED: "stop",
}
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class EngineConfig:
    max_invocation_attempts: int = 3
    invocation_retry_base_s: float = 1.0
    lease_margin_s: int = 30
    default_execution_timeout_s: int = 86_400
    default_retention_days: int = 14
    # Test clock: WAIT and step-retry timers fire after this fraction of their
    # duration. Recorded durations and scheduled timestamps stay those asked for.
    wait_time_scale: float = 1.0
    envelope_max_operations: int = 1000
    envelope_max_bytes: int = 5 * 1024 * 1024


class EngineBase:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        functions: FunctionStore,
        runtime: FunctionRuntime,
        clock: Clock,
        ids: Ids,
        tokens: TokenCodec,
        scheduler: Scheduler,
        listener: CompletionListener,
        config: EngineConfig | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.store = store
        self.functions = functions
        self.runtime = runtime
        self.clock = clock
        self.ids = ids
        self.tokens = tokens
        self.scheduler = scheduler
        self.listener = listener
        self.config = config or EngineConfig()
        # None: the scheduler reads the timer rows itself and only needs waking. A queue
        # (SQS) must be handed the timers: then every timer a commit sets goes to it.
        self.dispatcher = dispatcher
        self._locks = [threading.RLock() for _ in range(512)]

    # -- serialisation -------------------------------------------------------------

    def _lock(self, arn: str) -> threading.RLock:
        return self._locks[hash(arn) % len(self._locks)]

    def _mutate(self, arn: str, change: Callable[[Snapshot], tuple[Commit | None, R]]) -> R:
        """Load, change and commit one execution, serialised per execution.

        The lock serialises writers in this process; the store's version check makes
        the commit safe against writers elsewhere, and a lost race is retried.
        """
        for _ in range(8):
            with self._lock(arn):
                snap = self.store.load(arn)
                commit, result = change(snap)
                if commit is None:
                    return result
                try:
                    self.store.commit(commit)
                except ConcurrentModification:
                    log.info("concurrent change of %s; retrying", arn)
                    continue
            self._after_commit(commit)
            return result
        raise ConcurrentModification(f"Execution {arn} is changing too fast; try again.")

    def _after_commit(self, commit: Commit) -> None:
        self._timers_set(commit.set_timers)
        if commit.execution.status in _CLOSE_EVENTS:
            self.listener.execution_closed(commit.execution.arn)

    def _timers_set(self, timers: Sequence[Timer]) -> None:
        """Timers a commit just wrote: get them to whoever fires them."""
        if not timers:
            return
        if self.dispatcher is None:
            self.scheduler.wake(min(t.due_ms for t in timers))
            return
        try:
            self.dispatcher.dispatch(timers, self.clock.now_ms())
        except Exception:
            # The commit stands and its timers are rows: the sweep's overdue net sends
            # them late rather than never. Failing the caller would report a change
            # that happened as one that did not.
            log.exception("could not dispatch %d timers; the sweep will", len(timers))

    # -- working sets --------------------------------------------------------------

    def _working_set(self, snap: Snapshot) -> tuple[Execution, WorkingSet]:
        # Shallow: the engine reassigns fields and never changes a nested value in place
        # (errors, the pinned configuration), so the snapshot stays intact; a deep copy
        # of the pinned configuration on every change was measurable.
        ex = snap.execution.model_copy()
        create_seq = max((s.create_seq for s in snap.operations.values()), default=0)
        ws = WorkingSet(
            now_ms=self.clock.now_ms(),
            change_seq=ex.change_seq,
            create_seq=create_seq,
            ops=dict(snap.operations),
            log=EventLog(ex.next_event_id, []),
        )
        return ex, ws

    def _commit_of(self, ex: Execution, ws: WorkingSet, **extra: object) -> Commit:
        ex.change_seq = ws.change_seq
        ex.next_event_id = ws.log.next_id
        commit = Commit(
            execution=ex,
            operations=list(ws.changed.values()),
            events=list(ws.log.events),
            set_timers=[self._scaled(t, ws.now_ms) for t in ws.set_timers],
            clear_timers=list(ws.clear_timers),
            new_callbacks=list(ws.new_callbacks),
            clear_all_timers=ws.clear_all_timers,
        )
        for key, value in extra.items():
            setattr(commit, key, value)
        return commit

    def _scaled(self, timer: Timer, now_ms: int) -> Timer:
        scale = self.config.wait_time_scale
        if scale == 1.0 or timer.kind not in (TimerKind.WAIT, TimerKind.RETRY):
            return timer
        due = now_ms + int(max(0, timer.due_ms - now_ms) * scale)
        return Timer(timer.arn, timer.kind, timer.op_id, due)

    def _request_invocation(self, ex: Execution, ws: WorkingSet) -> None:
        """A backend completion happened: make sure the handler gets to see it."""
        ex.backend_seq = ws.change_seq
        if ex.status is ExecutionStatus.RUNNING and not ex.invocation_active and not ex.paused:
            ws.set_timers.append(Timer(ex.arn, TimerKind.INVOKE, "", ws.now_ms))

    def _close(
        self,
        ex: Execution,
        ws: WorkingSet,
        status: ExecutionStatus,
        *,
        result: str | None = None,
        error: ErrorObject | None = None,
        trigger: str | None = None,
    ) -> None:
        now = ws.now_ms
        trigger = trigger or _CLOSE_TRIGGERS[status]
        ex.status = ExecutionStatus(next_execution_status(ex.status, trigger))
        ex.end_ms = now
        ex.result = result if status is ExecutionStatus.SUCCEEDED else None
        ex.error = error if status is not ExecutionStatus.SUCCEEDED else None
        ex.invocation_active = False
        ex.paused = False
        ex.closing_status = None
        # Fence any invocation still running: its tokens now belong to a past generation.
        ex.generation += 1
        ws.clear_all_timers = True
        ws.set_timers.clear()
        exec_stored = ws.ops.get(ex.exec_id)
        if exec_stored is not None and exec_stored.op.Status is OperationStatus.STARTED:
            op = exec_stored.op.model_copy(deep=True)
            trigger = _CLOSE_TRIGGERS[status]
            op.Status = OperationStatus(next_operation_status("EXECUTION", op.Status, trigger))
            op.EndTimestamp = now
            ws.put(op)
        if status is ExecutionStatus.SUCCEEDED:
            details = {"Result": payload(result)}
        else:
            details = {"Error": error_payload(error)}
        ws.log.add(_CLOSE_EVENTS[status], now, details, op_id=ex.exec_id, name=ex.name)
        retention_ms = ex.retention_days * _DAY_MS
        ws.set_timers.append(Timer(ex.arn, TimerKind.RETENTION, "", now + retention_ms))
        if ex.parent_arn and ex.parent_op_id:
            # Outbox to the parent of a chained invoke, in this same transaction.
            ws.set_timers.append(Timer(ex.parent_arn, TimerKind.CHILD_DONE, ex.parent_op_id, now))
