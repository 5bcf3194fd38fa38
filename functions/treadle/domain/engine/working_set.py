"""The working set: one execution's changes, accumulated until they become one Commit.

Every change of an execution (a checkpoint batch, a timer, a callback, a control
request) is computed on a working set opened from the stored snapshot, and
`to_commit` turns it into the one atomic `Commit` the store applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.domain.audit import AuditRecord
from treadle.domain.engine.history import EventLog
from treadle.domain.models import Execution, ExecutionStatus, Operation, OperationUpdate
from treadle.domain.notifications import status_event
from treadle.domain.ports import Commit, Snapshot, StoredOperation, Timer, TimerKind


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
    client_token: tuple[str, str] | None = None  # (ClientToken, stored response JSON)
    # Durable operations this commit adds, as AWS meters them: each new operation, each
    # step retry or poll, each invocation-level retry (`engine/limits.py`).
    operations_added: int = 0
    # The status before this change (None: a new execution): `to_commit` adds the
    # status-change event when the status moved.
    status_before: ExecutionStatus | None = None
    active_before: bool = False

    def put(self, op: Operation) -> StoredOperation:
        self.change_seq += 1
        stored = self.ops.get(op.Id)
        if stored is None:
            self.create_seq += 1
            self.operations_added += 1
            stored = StoredOperation(op=op, create_seq=self.create_seq, change_seq=self.change_seq)
        else:
            stored = StoredOperation(
                op=op, create_seq=stored.create_seq, change_seq=self.change_seq
            )
        self.ops[op.Id] = stored
        self.changed[op.Id] = stored
        return stored

    def untouched(self) -> bool:
        """Nothing to write besides, perhaps, the execution record."""
        return not (
            self.changed
            or self.log.events
            or self.set_timers
            or self.clear_timers
            or self.new_callbacks
            or self.clear_all_timers
            or self.client_token
        )


def open_working_set(snap: Snapshot, now_ms: int) -> tuple[Execution, WorkingSet]:
    # Shallow: the engine reassigns fields and never changes a nested value in place
    # (errors, the pinned configuration), so the snapshot stays intact; a deep copy
    # of the pinned configuration on every change was measurable.
    ex = snap.execution.model_copy()
    create_seq = max((s.create_seq for s in snap.operations.values()), default=0)
    ws = WorkingSet(
        now_ms=now_ms,
        change_seq=ex.change_seq,
        create_seq=create_seq,
        ops=dict(snap.operations),
        log=EventLog(ex.next_event_id, []),
        status_before=ex.status,
        active_before=ex.invocation_active,
    )
    return ex, ws


def new_working_set(now_ms: int) -> WorkingSet:
    """The working set of an execution that does not exist yet."""
    return WorkingSet(now_ms=now_ms, change_seq=0, create_seq=0, ops={}, log=EventLog(1, []))


def to_commit(
    ex: Execution, ws: WorkingSet, wait_time_scale: float, audit: AuditRecord | None = None
) -> Commit:
    ex.change_seq = ws.change_seq
    ex.next_event_id = ws.log.next_id
    # The counters move with the changes they count, in this one commit.
    ex.operation_count += ws.operations_added
    ex.history_bytes += ws.log.payload_bytes
    # The outbox: a status change and its event are one commit (`domain/notifications`).
    changed = ex.status != ws.status_before
    event = status_event(ex, ws.status_before, ws.now_ms) if changed else None
    return Commit(
        execution=ex,
        operations=list(ws.changed.values()),
        events=list(ws.log.events),
        set_timers=[_scaled(t, ws.now_ms, wait_time_scale) for t in ws.set_timers],
        clear_timers=list(ws.clear_timers),
        new_callbacks=list(ws.new_callbacks),
        clear_all_timers=ws.clear_all_timers,
        client_token=ws.client_token,
        status_event=event,
        audit=audit,
        before=None if ws.status_before is None else (ws.status_before, ws.active_before),
    )


def _scaled(timer: Timer, now_ms: int, scale: float) -> Timer:
    if scale == 1.0 or timer.kind not in (TimerKind.WAIT, TimerKind.RETRY):
        return timer
    due = now_ms + int(max(0, timer.due_ms - now_ms) * scale)
    return Timer(timer.arn, timer.kind, timer.op_id, due)
