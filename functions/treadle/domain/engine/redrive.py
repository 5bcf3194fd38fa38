"""Redrive: a new execution of a closed one, seeded with what completed before a step.

The new execution has the source's input and its function (the version the source
pinned, or a newer one named), and starts with a copy of every operation that had
completed before the chosen step started (`seeded`): the SDK finds them in
`InitialExecutionState` and replays them from the record, so they do not run again;
the chosen step and everything after it run. The copies are the recorded operations
unchanged (ids, names, results, timestamps): the SDK's operation ids are deterministic
in call order, so the same code reaches the same ids. See docs/redrive.md.

The two executions link both ways: the new record's `redriven_from`, the source's
`redriven_to`, written together by `ExecutionStore.create_linked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from treadle.domain.audit import AuditRecord, pending_record
from treadle.domain.engine import queue
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.start import new_execution
from treadle.domain.engine.working_set import open_working_set, to_commit
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    ExecutionAlreadyStarted,
    InvalidParameter,
)
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    Execution,
    ExecutionLimits,
    Operation,
    OperationStatus,
    OperationType,
)
from treadle.domain.ports import Commit, FunctionVersion, Snapshot, StoredOperation

if TYPE_CHECKING:
    from treadle.domain.engine.engine import Engine

_ATTEMPTS = 8

# What "completed" means for a copy: the handler saw its outcome and went on. A step
# that failed for good before the chosen one was caught by the code, which replays.
_COMPLETED = frozenset(
    {OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.TIMED_OUT}
)


@dataclass(frozen=True)
class FromStep:
    """The operation to run again, by name and occurrence (1: its first by that name)."""

    name: str
    occurrence: int = 1


@dataclass(frozen=True)
class Redriven:
    execution: Execution
    created: bool  # False: a redrive of the same source under that name existed
    from_operation: Operation | None = None  # the operation run again (when created)
    seeded: int = 0  # operations copied (when created)


@dataclass
class Planned:
    execution: Execution
    commit: Commit
    source_commit: Commit
    chosen: Operation
    seeded: int  # operations copied


def chosen_operation(ordered: list[StoredOperation], from_step: FromStep | None) -> Operation:
    """The operation to run again: named, or the first step that FAILED."""
    if from_step is None:
        for s in ordered:
            if s.op.Type == OperationType.STEP and s.op.Status == OperationStatus.FAILED:
                return s.op
        raise InvalidParameter(
            "The execution has no failed step to redrive from: name one in fromStep."
        )
    if from_step.occurrence < 1:
        raise InvalidParameter("fromStep.occurrence counts from 1.")
    same = [s.op for s in ordered if s.op.Type != OperationType.EXECUTION]
    same = [op for op in same if op.Name == from_step.name]
    if len(same) < from_step.occurrence:
        raise InvalidParameter(
            f"The execution has {len(same)} operation(s) named {from_step.name!r},"
            f" not {from_step.occurrence}."
        )
    return same[from_step.occurrence - 1]


def seeded(snap: Snapshot, from_step: FromStep | None) -> tuple[Operation, list[Operation]]:
    """The chosen operation and the copies, in creation order.

    Copied: an operation created before the chosen one, completed (`_COMPLETED`) no
    later than the chosen one started, whose every enclosing context is copied or
    encloses the chosen operation. So a completed child context comes with all its
    operations; a context still open (or failed) at that time re-runs and none of its
    operations are copied, unless it encloses the chosen step: then its operations
    completed before the step are copied and the context itself runs again (the SDK
    re-enters it and replays them).
    """
    ordered = sorted(snap.operations.values(), key=lambda s: s.create_seq)
    chosen = chosen_operation(ordered, from_step)
    by_id = {s.op.Id: s for s in ordered}
    enclosing: set[str] = set()
    parent = chosen.ParentId
    while parent is not None and parent in by_id:
        enclosing.add(parent)
        parent = by_id[parent].op.ParentId
    limit = by_id[chosen.Id].create_seq
    copied: list[Operation] = []
    kept: set[str] = set()
    for s in ordered:
        op = s.op
        if s.create_seq >= limit:
            break
        if op.Type == OperationType.EXECUTION or op.Id in enclosing:
            continue
        if op.Status not in _COMPLETED or op.EndTimestamp is None:
            continue
        if op.EndTimestamp > chosen.StartTimestamp:
            continue
        if op.ParentId is not None and op.ParentId not in kept | enclosing:
            continue
        copied.append(op)
        kept.add(op.Id)
    return chosen, copied


def plan(
    source: Snapshot,
    fn: FunctionVersion,
    name: str,
    exec_id: str,
    from_step: FromStep | None,
    *,
    now_ms: int,
    config: EngineConfig,
    limits: ExecutionLimits | None = None,
    queued: bool = False,
) -> Planned:
    """The new execution's creation and the source's link to it, not yet written;
    `queued`: the new execution waits QUEUED for capacity (`engine/queue.py`)."""
    src = source.execution
    if src.status not in TERMINAL_EXECUTION_STATUSES:
        raise Conflict(
            f"Durable execution {src.arn} is {src.status.value}: only a closed execution"
            " can be redriven."
        )
    if fn.tenant != src.tenant or fn.function_name != src.function_name:
        raise InvalidParameter("A redrive runs the same function as its source.")
    chosen, copies = seeded(source, from_step)
    # A new execution: the limits it is given (its tenant's now), else its source's.
    ex, ws = new_execution(
        fn, name, exec_id, src.input_payload,
        now_ms=now_ms, config=config, parent=None, limits=limits or src.limits,
    )  # fmt: skip
    ex.redriven_from = src.arn
    for op in copies:
        ws.put(op)
    # ExecutionStarted says where the execution came from; the copies have no events
    # of their own here (their history is the source's).
    extra = ws.log.events[0].model_extra
    assert extra is not None  # Event allows extra fields: its details are one
    extra["ExecutionStartedDetails"] = {
        **extra["ExecutionStartedDetails"],
        "RedrivenFrom": {
            "DurableExecutionArn": src.arn,
            "FromOperationId": chosen.Id,
            "FromOperationName": chosen.Name,
            "SeededOperations": len(copies),
        },
    }
    if queued:
        queue.hold(ex, ws)
    commit = to_commit(ex, ws, config.wait_time_scale)
    linked, link_ws = open_working_set(source, now_ms)
    linked.redriven_to = [*src.redriven_to, ex.arn]
    source_commit = to_commit(linked, link_ws, config.wait_time_scale)
    return Planned(ex, commit, source_commit, chosen, len(copies))


def same_redrive(existing: Execution, source_arn: str) -> Execution:
    """A redrive repeated under the same name is the same redrive only of the same source."""
    if existing.redriven_from != source_arn:
        raise ExecutionAlreadyStarted(
            f"Durable execution {existing.name} already exists and is not a redrive of"
            f" {source_arn}."
        )
    return existing


def run(
    engine: Engine,
    source_arn: str,
    fn: FunctionVersion | None,
    from_step: FromStep | None,
    name: str | None,
    limits: ExecutionLimits | None = None,
    queued: bool = False,
) -> Redriven:
    """Redrive `source_arn` (fn None: the version it ran), idempotently on `name`."""
    store = engine.store
    audit: AuditRecord | None = None
    for _ in range(_ATTEMPTS):
        source = store.load(source_arn)
        src = source.execution
        if name is not None:
            existing = store.find_by_name(src.tenant, src.function_name, name)
            if existing is not None:
                return Redriven(same_redrive(existing, source_arn), False)
        target = fn or _ran_on(engine, src)
        exec_id = engine.ids.execution_id()
        planned = plan(
            source, target, name or exec_id, exec_id, from_step,
            now_ms=engine.clock.now_ms(), config=engine.config, limits=limits, queued=queued,
        )  # fmt: skip
        # The call's record rides with the new execution (taken once, kept for a retry).
        audit = audit or pending_record(resource=source_arn)
        planned.commit.audit = audit
        try:
            store.create_linked(planned.commit, planned.source_commit)
        except ConcurrentModification:
            continue  # the source changed (another redrive of it): read it again
        except AlreadyExists:
            existing = store.find_by_name(src.tenant, src.function_name, planned.execution.name)
            if existing is None:
                raise
            return Redriven(same_redrive(existing, source_arn), False)
        engine.after_commit(planned.commit)
        return Redriven(planned.execution, True, planned.chosen, planned.seeded)
    raise ConcurrentModification(f"Execution {source_arn} is changing too fast; try again.")


def _ran_on(engine: Engine, src: Execution) -> FunctionVersion:
    """The configuration the source ran: pinned at its start (older records: its version)."""
    if src.pinned_function is not None:
        return FunctionVersion.model_validate(src.pinned_function)
    return engine.functions.get(src.tenant, src.function_name, src.version)
