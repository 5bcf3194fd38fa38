"""Limits per execution (docs/limits.md): operations, persisted payload bytes, and the
size of one payload.

The limits are pinned in the execution record at start (`Execution.limits`); the
counters they bound (`operation_count`, `history_bytes`) live in the same record and
move with the commit that changes them (`working_set.to_commit`). A checkpoint batch
is priced before anything of it is applied, from the batch alone: O(its updates), no
read. A batch that would pass a limit ends the execution FAILED with
`ExecutionLimitExceeded`, in the checkpoint's own commit; nothing of the batch is kept.

What counts, as AWS meters it ("How durable operations are metered", docs/limits.md):
an operation is each new operation (the EXECUTION one included), each step retry or
poll (a STEP RETRY) and each invocation-level retry; bytes are every payload persisted
in the history: the input, step, context and chained results and errors, callback
answers, the execution's result or error, invocation errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from treadle.domain.engine.history import payload_size
from treadle.domain.models import (
    ErrorObject,
    Execution,
    OperationAction,
    OperationType,
    OperationUpdate,
)

LIMIT_EXCEEDED = "ExecutionLimitExceeded"


def update_bytes(u: OperationUpdate) -> int:
    """The payload bytes one update persists: its payload, or its error object."""
    error = u.Error.model_dump(exclude_none=True) if u.Error is not None else None
    return payload_size(u.Payload) + payload_size(error)


def batch_cost(
    updates: Sequence[OperationUpdate], existing: Mapping[str, object]
) -> tuple[int, int]:
    """(operations, payload bytes) a validated batch would add to its execution."""
    operations = size = 0
    new_ids: set[str] = set()
    for u in updates:
        if u.Type is not OperationType.EXECUTION and u.Id not in existing and u.Id not in new_ids:
            new_ids.add(u.Id)
            operations += 1
        if u.Action is OperationAction.RETRY:
            operations += 1
        size += update_bytes(u)
    return operations, size


def exceeded(ex: Execution, operations: int, size: int) -> ErrorObject | None:
    """The error that ends `ex` if adding (operations, size) passes one of its limits."""
    limits = ex.limits
    count = ex.operation_count + operations
    if count > limits.max_operations:
        message = f"operations per execution: {count} > {limits.max_operations}"
        return ErrorObject(ErrorType=LIMIT_EXCEEDED, ErrorMessage=message)
    total = ex.history_bytes + size
    if total > limits.max_history_bytes:
        message = f"history bytes per execution: {total} > {limits.max_history_bytes}"
        return ErrorObject(ErrorType=LIMIT_EXCEEDED, ErrorMessage=message)
    return None
