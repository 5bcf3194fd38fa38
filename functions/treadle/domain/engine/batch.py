"""Batch starts: many executions of one function version, created by one store call.

`plan` decides each entry before anything is written: an earlier entry or a stored
execution of the same name makes it that execution (same input) or an error of its
own; the rest become new executions, one `Commit` each, for one `create_batch`.
`settle` reads back the names another caller took between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from treadle.domain.engine import queue
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.start import input_hash, new_execution, same_start
from treadle.domain.engine.working_set import WorkingSet, to_commit
from treadle.domain.errors import ConcurrentModification, TreadleError
from treadle.domain.models import Execution, ExecutionLimits
from treadle.domain.ports import Commit, ExecutionStore, FunctionVersion, Ids

Started = tuple[Execution, bool]  # (execution, created by this batch)
Result = Started | TreadleError


@dataclass
class Plan:
    fn: FunctionVersion
    results: list[Result | None]
    commits: list[Commit] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # the entry of each commit


def plan(
    fn: FunctionVersion,
    entries: Sequence[tuple[str | None, str | None]],
    *,
    store: ExecutionStore,
    ids: Ids,
    now_ms: int,
    config: EngineConfig,
    limits: ExecutionLimits | None = None,
    queued: Sequence[bool] = (),
    before_commit: Callable[[Execution, WorkingSet], None] | None = None,
) -> Plan:
    """`queued[i]`: entry i is accepted QUEUED (`engine/queue.py`) if it is new.
    `before_commit(ex, ws)`: on each new execution not queued, before its commit is made
    (its first invocation's lease, `starting.py`)."""
    out = Plan(fn, [None] * len(entries))
    fresh: dict[str, Execution] = {}  # names this batch creates
    for i, (name, input_payload) in enumerate(entries):
        digest = input_hash(input_payload)
        try:
            known = fresh.get(name) if name is not None else None
            if known is None and name is not None:
                known = store.find_by_name(fn.tenant, fn.function_name, name)
            if known is not None:
                out.results[i] = (same_start(known, digest), False)
                continue
        except TreadleError as exc:
            out.results[i] = exc
            continue
        exec_id = ids.execution_id()
        ex, ws = new_execution(
            fn, name or exec_id, exec_id, input_payload,
            now_ms=now_ms, config=config, parent=None, limits=limits,
        )  # fmt: skip
        if i < len(queued) and queued[i]:
            queue.hold(ex, ws)
        elif before_commit is not None:
            before_commit(ex, ws)
        fresh[ex.name] = ex
        out.results[i] = (ex, True)
        out.commits.append(to_commit(ex, ws, config.wait_time_scale))
        out.slots.append(i)
    return out


def settle(out: Plan, created: Sequence[bool], store: ExecutionStore) -> list[Result]:
    fn = out.fn
    for slot, commit, was_created in zip(out.slots, out.commits, created, strict=True):
        if was_created:
            continue
        # Another caller started this name between `plan` and the store call.
        ex = commit.execution
        existing = store.find_by_name(fn.tenant, fn.function_name, ex.name)
        try:
            if existing is None:
                raise ConcurrentModification(f"Execution {ex.name} could not be started.")
            out.results[slot] = (same_start(existing, ex.input_hash), False)
        except TreadleError as exc:
            out.results[slot] = exc
    return [r for r in out.results if r is not None]
