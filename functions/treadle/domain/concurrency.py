"""What the running quota (`maxRunningExecutions`) counts (issue 14, point 5).

An execution is "running" for its tenant's concurrency while it holds an invocation or
awaits one: status RUNNING with an INVOKE timer. The engine keeps exactly one INVOKE
timer while an invocation is due, leased (its deadline) or being retried after a failed
invocation, and clears it when the invocation ends with the execution parked on a wait,
a callback or a step retry, or when it is paused; a wait elapsing, a callback answered
or a retry coming due sets it again (`engine/queue.py`, `engine/invocation.py`).

Counting in-flight invocations instead would be wrong: a burst of starts would all pass
before any of them is leased. Counting by the INVOKE timer counts a start at once.

Both stores count this in the transaction that changes it: SQLite with the row's
`invoking` column, written with the row from `invoke_timer_change`, and triggers on it
(`adapters/sqlite/db.py`, the same rule in SQL), DynamoDB with
the META item's COUNTED flag and the tenant's counter shards (`adapters/aws/commits.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import Commit, TimerKind


def occupies_slot(status: ExecutionStatus, timer_kinds: Iterable[TimerKind]) -> bool:
    """Whether an execution in `status` with these timers counts as running."""
    return status == ExecutionStatus.RUNNING and TimerKind.INVOKE in set(timer_kinds)


def invoke_timer_change(commit: Commit) -> tuple[bool, bool]:
    """(sets, clears): whether `commit` sets and clears its execution's own INVOKE timer
    (a store applies clears first, then sets)."""
    own = commit.execution.arn
    sets = any(t.kind is TimerKind.INVOKE and t.arn == own for t in commit.set_timers)
    clears = commit.clear_all_timers or any(k is TimerKind.INVOKE for k, _ in commit.clear_timers)
    return sets, clears


def frees_slot(commit: Commit) -> bool:
    """Whether `commit` ends the execution's invocation without scheduling another: its
    slot frees (it parks, pauses or closes), so a queued start may take it."""
    sets, clears = invoke_timer_change(commit)
    return clears and not sets
