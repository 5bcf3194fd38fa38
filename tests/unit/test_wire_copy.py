"""`Wire.deep_copy`: the engine's copy of a stored operation before it changes it.

The snapshot cache hands the engine the operations it holds; a change that reached into
one of them in place would change the cached state of an execution without a commit.
The copy must therefore share nothing that can change: no model, no list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from treadle.domain.models import (
    CallbackDetails,
    ChainedInvokeDetails,
    ContextDetails,
    ErrorObject,
    ExecutionDetails,
    Operation,
    OperationStatus,
    OperationType,
    StepDetails,
    WaitDetails,
)


def _error() -> ErrorObject:
    return ErrorObject(ErrorType="E", ErrorMessage="m", StackTrace=["a", "b"])


def operations() -> list[Operation]:
    base: dict[str, Any] = {"Id": "op", "StartTimestamp": 1, "Status": OperationStatus.STARTED}
    kinds: list[dict[str, Any]] = [
        {"Type": OperationType.EXECUTION, "ExecutionDetails": ExecutionDetails(InputPayload="{}")},
        {"Type": OperationType.CONTEXT, "ContextDetails": ContextDetails(Error=_error())},
        {"Type": OperationType.STEP, "StepDetails": StepDetails(Attempt=2, Error=_error())},
        {"Type": OperationType.WAIT, "WaitDetails": WaitDetails(ScheduledEndTimestamp=9)},
        {"Type": OperationType.CALLBACK, "CallbackDetails": CallbackDetails(Error=_error())},
        {"Type": OperationType.CHAINED_INVOKE, "ChainedInvokeDetails": ChainedInvokeDetails()},
    ]
    return [Operation(**base, Name="n", **kind) for kind in kinds]


def _mutable_parts(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every model and list inside `value`, with where it is."""
    if isinstance(value, BaseModel):
        yield path, value
        for name, field in value.__dict__.items():
            yield from _mutable_parts(field, f"{path}.{name}")
    elif isinstance(value, list):
        yield path, value
        for i, item in enumerate(value):
            yield from _mutable_parts(item, f"{path}[{i}]")


def test_a_copy_equals_its_original_and_dumps_the_same() -> None:
    for op in operations():
        copy = op.deep_copy()
        assert copy == op
        assert copy.model_dump_json(exclude_none=True) == op.model_dump_json(exclude_none=True)
        assert copy.model_fields_set == op.model_fields_set
        assert type(copy) is Operation


def test_a_copy_shares_no_model_and_no_list_with_its_original() -> None:
    for op in operations():
        original = dict(_mutable_parts(op))
        copied = dict(_mutable_parts(op.deep_copy()))
        assert original.keys() == copied.keys()
        for path, part in copied.items():
            assert part is not original[path], f"{op.Type} shares {path or 'itself'}"


def test_changing_a_copy_in_place_leaves_the_original_as_it_was() -> None:
    op = operations()[2]  # a step, with an error and its stack trace
    before = op.model_dump_json()
    copy = op.deep_copy()
    assert copy.StepDetails is not None and copy.StepDetails.Error is not None
    copy.Status = OperationStatus.SUCCEEDED
    copy.StepDetails.Attempt = 3
    copy.StepDetails.Error.ErrorMessage = "changed"
    assert copy.StepDetails.Error.StackTrace is not None
    copy.StepDetails.Error.StackTrace.append("c")
    assert op.model_dump_json() == before
