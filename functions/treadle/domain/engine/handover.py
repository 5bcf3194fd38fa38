"""An invocation handed straight to a lane slot, its lease in the commit that asked for it.

A start that finds a free slot (`InvocationLanes.reserve`, embedded only) takes its
first invocation's lease in its own commit and gives the invocation to that slot
(`starting.py`). A change that makes a parked execution invocable does the same
(`change_then_invoke`): a wait elapsed, a retry due, a callback answered or timed out,
a chained invoke's outcome, an event delivered to a wait, a resume after a pause.
Without it the change commits an INVOKE timer due now, the scheduler reads it back and
a lane thread takes the lease in a commit of its own: one commit, one scheduler pass
and one thread switch more per resume.

The lease's timer is set as for any invocation, so a crash between the commit and the
hand-off (or during the invocation) is recovered like any lapsed lease. Without a slot
(the execution's invocation already in flight, another process owns it, the lane's
backlog full, the AWS backend) the INVOKE timer runs it, as before.

A full lane queues the invocation in memory behind the others (`slot.queued`) rather
than leaving it to a row: a flood of starts or resumes (a batch of 100, 50,000 waits
due at once) then costs each one neither a lease commit of its own nor a pass of the
timer loop (measured: a third of a queued one-step execution's CPU). Such a lease is
marked (`Execution.lease_queued`): a restart before its invocation ends gives it back
without counting a crash, since the platform cannot tell whether the invocation had
begun, and the restart is the platform's doing, not the handler's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from treadle.domain.engine import invocation
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.lanes import InvocationSlot
from treadle.domain.models import Execution
from treadle.domain.ports import TimerKind

if TYPE_CHECKING:
    from treadle.domain.engine.engine import Engine

R = TypeVar("R")


def lease(
    engine: Engine, ex: Execution, ws: WorkingSet, slot: InvocationSlot
) -> invocation.Begun | None:
    """The invocation's lease, in the change's own commit: instead of the INVOKE timer
    due now, the lease's."""
    ws.set_timers = [t for t in ws.set_timers if t.kind is not TimerKind.INVOKE]
    return invocation.begin(
        ex, ws, functions=engine.functions, ids=engine.ids, tokens=engine.tokens,
        config=engine.config, queued=slot.queued,
    )  # fmt: skip


def hand_over(
    engine: Engine, slot: InvocationSlot | None, arn: str, begun: invocation.Begun | None
) -> None:
    if slot is None:
        return
    if begun is None:  # nothing to invoke after all
        slot.release()
        return
    slot.run(lambda: engine.invoke_leased(arn, begun))


def _invoke_now(ws: WorkingSet) -> bool:
    return any(t.kind is TimerKind.INVOKE and t.due_ms <= ws.now_ms for t in ws.set_timers)


def change_then_invoke(engine: Engine, arn: str, change: Callable[[Execution, WorkingSet], R]) -> R:
    """`change` (committed as by `Engine._change`, its result returned), and if it asks
    for an invocation now and a slot is free, the lease in the same commit and the
    invocation in the slot."""
    slot = None if engine.lanes is None else engine.lanes.reserve(arn)
    if slot is None:
        return engine._change(arn, change)

    def then_lease(ex: Execution, ws: WorkingSet) -> tuple[R, invocation.Begun | None]:
        result = change(ex, ws)
        return result, (lease(engine, ex, ws, slot) if _invoke_now(ws) else None)

    try:
        result, begun = engine._change(arn, then_lease)
    except BaseException:
        slot.release()
        raise
    hand_over(engine, slot, arn, begun)
    return result
