"""Starting executions (`Engine.start`, `Engine.start_batch`): the new execution's
commit, and its first invocation handed straight to a lane when one has room.

A start that gets a slot (`InvocationLanes.reserve`, embedded only: free, or queued
behind others) takes its first invocation's lease in its own commit and gives the
invocation to that slot (`handover.py`): one commit, one scheduler pass and one thread
switch fewer than leaving it to the INVOKE timer; a batch start does so for each of its
executions. Without a slot (AWS, a QUEUED start, the lane's backlog full) the INVOKE
timer due now runs it, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from treadle.domain.engine import batch, handover, invocation, queue
from treadle.domain.engine.start import input_hash, new_execution, same_start
from treadle.domain.engine.working_set import WorkingSet, to_commit
from treadle.domain.errors import AlreadyExists, TreadleError
from treadle.domain.lanes import InvocationSlot
from treadle.domain.models import Execution, ExecutionLimits
from treadle.domain.ports import FunctionVersion

if TYPE_CHECKING:
    from treadle.domain.engine.engine import Engine


def start(
    engine: Engine,
    fn: FunctionVersion,
    name: str | None,
    input_payload: str | None,
    *,
    parent: tuple[str, str] | None,
    exec_id: str | None,
    limits: ExecutionLimits | None,
    queued: bool,
) -> tuple[Execution, bool]:
    digest = input_hash(input_payload)
    if name is not None:
        existing = engine.store.find_by_name(fn.tenant, fn.function_name, name)
        if existing is not None:
            return same_start(existing, digest), False
    exec_id = exec_id or engine.ids.execution_id()
    ex, ws = new_execution(
        fn,
        name or exec_id,
        exec_id,
        input_payload,
        now_ms=engine.clock.now_ms(),
        config=engine.config,
        parent=parent,
        limits=limits,
    )
    if queued:
        queue.hold(ex, ws)
    slot = None if queued or engine.lanes is None else engine.lanes.reserve(ex.arn)
    try:
        begun = None if slot is None else handover.lease(engine, ex, ws, slot)
        commit = to_commit(ex, ws, engine.config.wait_time_scale)
        engine.store.create(commit)
    except AlreadyExists:
        if slot is not None:
            slot.release()
        existing = engine.store.find_by_name(fn.tenant, fn.function_name, ex.name)
        if existing is None:
            raise
        return same_start(existing, digest), False
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    engine.after_commit(commit)
    handover.hand_over(engine, slot, ex.arn, begun)
    return ex, True


def start_batch(
    engine: Engine,
    fn: FunctionVersion,
    entries: Sequence[tuple[str | None, str | None]],
    limits: ExecutionLimits | None,
    queued: Sequence[bool],
) -> list[batch.Started | TreadleError]:
    # Each start's first invocation handed over as a single start's is: to a free slot,
    # or queued behind the others when the lane is full (most of a batch of 100).
    handed: dict[str, tuple[InvocationSlot, invocation.Begun | None]] = {}
    lanes = engine.lanes

    def take_lease(ex: Execution, ws: WorkingSet) -> None:
        slot = None if lanes is None else lanes.reserve(ex.arn)
        if slot is not None:
            handed[ex.arn] = (slot, None)  # before the lease: released if it raises
            handed[ex.arn] = (slot, handover.lease(engine, ex, ws, slot))

    try:
        plan = batch.plan(
            fn, entries, store=engine.store, ids=engine.ids, now_ms=engine.clock.now_ms(),
            config=engine.config, limits=limits, queued=queued, before_commit=take_lease,
        )  # fmt: skip
        created = engine.store.create_batch(plan.commits)
    except BaseException:
        for reserved, _ in handed.values():
            reserved.release()
        raise
    for commit, was_created in zip(plan.commits, created, strict=True):
        arn = commit.execution.arn
        slot, begun = handed.pop(arn, None) or (None, None)
        if was_created:
            engine.after_commit(commit)
            handover.hand_over(engine, slot, arn, begun)
        elif slot is not None:
            slot.release()
    return batch.settle(plan, created, engine.store)
