"""Starting executions (`Engine.start`, `Engine.start_batch`): the new execution's
commit, and its first invocation handed straight to a lane when one has room.

A start that finds a free slot (`InvocationLanes.reserve`, embedded only) takes its
first invocation's lease in its own commit and gives the invocation to that slot
(`handover.py`): one commit, one scheduler pass and one thread switch fewer than leaving
it to the INVOKE timer. Without a slot (lane full, AWS, a queued start) the INVOKE
timer due now runs it, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from treadle.domain.engine import batch, handover, queue
from treadle.domain.engine.start import input_hash, new_execution, same_start
from treadle.domain.engine.working_set import to_commit
from treadle.domain.errors import AlreadyExists, TreadleError
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
        begun = None if slot is None else handover.lease(engine, ex, ws)
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
    # No hand-over here: measured (W2b, 100 per call) within noise, +2%, not kept.
    plan = batch.plan(
        fn, entries, store=engine.store, ids=engine.ids, now_ms=engine.clock.now_ms(),
        config=engine.config, limits=limits, queued=queued,
    )  # fmt: skip
    created = engine.store.create_batch(plan.commits)
    for commit, was_created in zip(plan.commits, created, strict=True):
        if was_created:
            engine.after_commit(commit)
    return batch.settle(plan, created, engine.store)
