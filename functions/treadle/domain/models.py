"""Wire-shaped models of durable executions: operations, updates, history events.

Field names are the AWS wire names (PascalCase) on purpose: these models are serialised
to and parsed from the Lambda durable-execution JSON with no mapping layer, which keeps
the translation exact. Timestamps are kept as epoch milliseconds (`int`), which is what
the invocation envelope carries; the API layer converts them for JSON responses.
"""

import copy
from enum import Enum, StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

# Values a copy may share with its original: they cannot change in place.
_IMMUTABLE = (str, int, float, bool, bytes, type(None), Enum)


class Wire(BaseModel):
    """Base for wire models: unknown fields rejected, None fields omitted on dump."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")

    def deep_copy(self) -> Self:
        """What `model_copy(deep=True)` gives, for a fraction of its cost: wire models
        hold strings, numbers, enums, lists and other wire models, so copying the
        models and lists is enough; `copy.deepcopy`'s memo and per-value dispatch were
        ~4% of the engine's CPU per one-step execution (`benchmarks.engine`). Anything
        else is left to `copy.deepcopy`."""
        new = self.__copy__()
        fields = new.__dict__
        for name, value in fields.items():
            if not isinstance(value, _IMMUTABLE):
                fields[name] = _copied(value)
        return new


def _copied(value: Any) -> Any:
    if isinstance(value, Wire):
        return value.deep_copy()
    if isinstance(value, list):
        return [v if isinstance(v, _IMMUTABLE) else _copied(v) for v in value]
    return copy.deepcopy(value)


class OperationType(StrEnum):
    EXECUTION = "EXECUTION"
    CONTEXT = "CONTEXT"
    STEP = "STEP"
    WAIT = "WAIT"
    CALLBACK = "CALLBACK"
    CHAINED_INVOKE = "CHAINED_INVOKE"


class OperationStatus(StrEnum):
    STARTED = "STARTED"
    PENDING = "PENDING"
    READY = "READY"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"


TERMINAL_OPERATION_STATUSES = frozenset(
    {
        OperationStatus.SUCCEEDED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
        OperationStatus.TIMED_OUT,
        OperationStatus.STOPPED,
    }
)


class OperationAction(StrEnum):
    START = "START"
    SUCCEED = "SUCCEED"
    FAIL = "FAIL"
    RETRY = "RETRY"
    CANCEL = "CANCEL"


class ExecutionStatus(StrEnum):
    # Treadle's: a start accepted over the running limit or the start rate, not invoked
    # yet (AWS has no such status; docs/limits.md says how it maps). Not terminal.
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"


TERMINAL_EXECUTION_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.STOPPED,
    }
)


class ErrorObject(Wire):
    ErrorType: str | None = None
    ErrorMessage: str | None = None
    ErrorData: str | None = None
    StackTrace: list[str] | None = None


class ExecutionDetails(Wire):
    InputPayload: str | None = None


class ContextDetails(Wire):
    ReplayChildren: bool | None = None
    Result: str | None = None
    Error: ErrorObject | None = None


class StepDetails(Wire):
    Attempt: int | None = None
    NextAttemptTimestamp: int | None = None
    Result: str | None = None
    Error: ErrorObject | None = None


class WaitDetails(Wire):
    ScheduledEndTimestamp: int | None = None


class CallbackDetails(Wire):
    CallbackId: str | None = None
    Result: str | None = None
    Error: ErrorObject | None = None


class ChainedInvokeDetails(Wire):
    Result: str | None = None
    Error: ErrorObject | None = None


# Aliases: the wire field names equal their type names, which pydantic cannot resolve.
_ExecutionDetails = ExecutionDetails
_ContextDetails = ContextDetails
_StepDetails = StepDetails
_WaitDetails = WaitDetails
_CallbackDetails = CallbackDetails
_ChainedInvokeDetails = ChainedInvokeDetails


class Operation(Wire):
    Id: str
    ParentId: str | None = None
    Name: str | None = None
    Type: OperationType
    SubType: str | None = None
    StartTimestamp: int
    EndTimestamp: int | None = None
    Status: OperationStatus
    ExecutionDetails: _ExecutionDetails | None = None
    ContextDetails: _ContextDetails | None = None
    StepDetails: _StepDetails | None = None
    WaitDetails: _WaitDetails | None = None
    CallbackDetails: _CallbackDetails | None = None
    ChainedInvokeDetails: _ChainedInvokeDetails | None = None


class ContextOptions(Wire):
    ReplayChildren: bool | None = None


class StepOptions(Wire):
    NextAttemptDelaySeconds: int | None = Field(default=None, ge=0, le=31_622_400)


class WaitOptions(Wire):
    WaitSeconds: int | None = Field(default=None, ge=0, le=31_622_400)


class CallbackOptions(Wire):
    TimeoutSeconds: int | None = Field(default=None, ge=0, le=99_999_999)
    HeartbeatTimeoutSeconds: int | None = Field(default=None, ge=0, le=99_999_999)


class ChainedInvokeOptions(Wire):
    FunctionName: str
    TenantId: str | None = None
    XAmznTraceId: str | None = None


_ContextOptions = ContextOptions
_StepOptions = StepOptions
_WaitOptions = WaitOptions
_CallbackOptions = CallbackOptions
_ChainedInvokeOptions = ChainedInvokeOptions

_OPERATION_ID = r"^[a-zA-Z0-9\-_]+$"


class OperationUpdate(Wire):
    Id: str = Field(min_length=1, max_length=64, pattern=_OPERATION_ID)
    ParentId: str | None = Field(default=None, min_length=1, max_length=64, pattern=_OPERATION_ID)
    Name: str | None = Field(default=None, min_length=1, max_length=256)
    Type: OperationType
    SubType: str | None = Field(default=None, min_length=1, max_length=32)
    Action: OperationAction
    Payload: str | None = None
    Error: ErrorObject | None = None
    ContextOptions: _ContextOptions | None = None
    StepOptions: _StepOptions | None = None
    WaitOptions: _WaitOptions | None = None
    CallbackOptions: _CallbackOptions | None = None
    ChainedInvokeOptions: _ChainedInvokeOptions | None = None


class CheckpointRequest(Wire):
    CheckpointToken: str = Field(min_length=1, max_length=2048)
    Updates: list[OperationUpdate] = Field(default_factory=list)
    ClientToken: str | None = Field(default=None, min_length=1, max_length=64)


class Event(Wire):
    """One history event; its `<EventType>Details` object is kept as wire JSON."""

    model_config = ConfigDict(extra="allow")

    EventType: str
    SubType: str | None = None
    EventId: int
    Id: str | None = None
    Name: str | None = None
    EventTimestamp: int
    ParentId: str | None = None


class DurableConfig(Wire):
    ExecutionTimeout: int | None = Field(default=None, ge=1, le=31_622_400)
    RetentionPeriodInDays: int | None = Field(default=None, ge=1, le=90)
    KMSKeyArn: str | None = None


# What AWS publishes for Lambda durable functions (docs/limits.md): 3,000 durable
# operations and 100 MB of persisted payloads per execution, 256 KB per checkpointed
# payload (the SDK's CHECKPOINT_SIZE_LIMIT_BYTES).
DEFAULT_MAX_OPERATIONS = 3000
DEFAULT_MAX_HISTORY_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024


class ExecutionLimits(BaseModel):
    """The limits one execution runs under, fixed when it starts (its tenant's quotas
    then): a later quota change never alters a running execution's replay, and a
    checkpoint needs no tenant lookup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_operations: int = Field(default=DEFAULT_MAX_OPERATIONS, ge=1)
    max_history_bytes: int = Field(default=DEFAULT_MAX_HISTORY_BYTES, ge=1)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1)


class BufferedEvent(BaseModel):
    """An event sent to an execution before any wait for its type was open.

    Kept in the execution record (see `docs/events.md`): consuming one is then part of
    the very commit that records the wait, on both backends, with no store of its own.
    """

    model_config = ConfigDict(extra="forbid")

    type: str
    payload: str | None  # JSON text, as a callback result
    sent_ms: int
    expires_ms: int


class Execution(BaseModel):
    """The execution record: what the control plane shows, plus the invocation lease."""

    model_config = ConfigDict(extra="forbid")

    arn: str
    tenant: str
    function_name: str
    version: str
    name: str
    exec_id: str
    status: ExecutionStatus
    input_payload: str | None
    input_hash: str
    result: str | None = None
    error: ErrorObject | None = None
    start_ms: int
    end_ms: int | None = None
    execution_timeout_s: int
    retention_days: int
    # Invocation lease: each invocation gets a new generation; tokens of older
    # generations are fenced. `token_seq` counts checkpoints within a generation.
    generation: int = 0
    token_seq: int = 0
    invocation_active: bool = False
    invocation_start_ms: int | None = None
    request_id: str | None = None
    invocation_attempts: int = 0
    # A lease taken while the invocation lane was full (`engine/handover.py`): its
    # invocation waits in memory behind others, so a restart before it ends is the
    # platform's, not the handler's: the lease is given back without a crash counted.
    lease_queued: bool = False
    # Change counters: every operation change gets the next `change_seq`; the
    # handler has seen everything up to `delivered_seq`; backend completions
    # bump `backend_seq` so a suspended handler is re-invoked.
    change_seq: int = 0
    delivered_seq: int = 0
    backend_seq: int = 0
    next_event_id: int = 1
    paused: bool = False
    pause_pending: bool = False
    # Set when the handler checkpointed EXECUTION SUCCEED/FAIL: closing is
    # completed when the invocation ends, after its InvocationCompleted event.
    closing_status: ExecutionStatus | None = None
    parent_arn: str | None = None
    parent_op_id: str | None = None
    # The function configuration at start: an execution replays only against the code
    # it started on, even when it started on the mutable $LATEST.
    pinned_function: dict[str, Any] | None = None
    # Events that arrived before a matching wait, oldest first (`engine/events.py`).
    # Replaced, never changed in place: working sets copy the record shallowly.
    event_buffer: list[BufferedEvent] = Field(default_factory=list)
    # Redrive links (`engine/redrive.py`): the execution this one was redriven from, and
    # those redriven from this one, oldest first (a list replaced, never changed in place).
    redriven_from: str | None = None
    redriven_to: list[str] = Field(default_factory=list)
    # The limits pinned at start, and the running counters they are checked against
    # (`engine/limits.py`): kept here and updated by the same commit as the change they
    # count, so a checkpoint checks them in O(1) and a replay never counts twice.
    limits: ExecutionLimits = Field(default_factory=ExecutionLimits)
    operation_count: int = 0
    history_bytes: int = 0
    # When the status last changed (its notification's time, `domain/notifications.py`):
    # kept so that an execution's events are time-ordered even across hosts' clocks.
    status_changed_ms: int = 0
    version_seq: int = 0  # optimistic concurrency for the store

    @property
    def code_key(self) -> str | None:
        """The code package it runs (None for records from before pinning): in use
        until the execution is deleted (`domain/code_refs.py`)."""
        code = (self.pinned_function or {}).get("code_key")
        return code if isinstance(code, str) else None
