"""`/v1` routes of executions: events by type (`docs/events.md`).

- `POST /v1/executions/<arn>/events` (the ARN percent-encoded as one segment) and
  `POST /v1/functions/<name>/executions/<executionName>/events`, body `EventBody`:
  200 with `delivered` (an open wait took it) or `buffered`; 409 when the execution
  has ended; 429 when its buffer is full.
- `POST /v1/functions/<name>/executions:batch`, body `BatchBody`: up to 100 starts of
  one version; 200 with, per entry in order, its execution ARN (`created` false when
  the name was started before with the same input) or its own error.
- `POST /v1/executions/<arn>/redrive`, body `RedriveBody`: a new execution of a closed
  one from a step (`docs/redrive.md`); 200 with `RedriveOut`.
- `POST /v1/functions/<name>/executions:redrive`, body `BatchRedriveBody`: up to 100
  closed executions matching a filter and not redriven yet; per execution its redrive
  or its own error.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from treadle.api.errors import classify
from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op
from treadle.app.executions import MAX_BATCH, ExecutionService
from treadle.domain.engine.events import DEFAULT_TTL_S, EVENT_TYPE_PATTERN, MAX_TTL_S
from treadle.domain.engine.redrive import FromStep, Redriven
from treadle.domain.errors import TreadleError
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import ExecutionQuery

E = "/v1/executions"
F = "/v1/functions"


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=EVENT_TYPE_PATTERN, description="What waits select on.")
    payload: Any = Field(default=None, description="Any JSON value: what the wait returns.")
    ttlSeconds: int = Field(
        default=DEFAULT_TTL_S,
        ge=1,
        le=MAX_TTL_S,
        description="How long the event stays buffered if no wait is open.",
    )


class EventSent(BaseModel):
    executionArn: str
    outcome: Literal["delivered", "buffered"]


class BatchEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="The execution name: a start is idempotent on it (same input).",
    )
    input: Any = Field(default=None, description="Any JSON value: the handler's event.")


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qualifier: str | None = Field(
        default=None, pattern=r"^(\$LATEST|[0-9]{1,10})$", description="Default $LATEST."
    )
    executions: list[BatchEntry] = Field(min_length=1, max_length=MAX_BATCH)


class BatchError(BaseModel):
    status: int
    code: str
    message: str


class BatchEntryOut(BaseModel):
    name: str | None
    executionArn: str | None = None
    created: bool | None = None
    # RUNNING, or QUEUED when accepted over the running limit or start rate (or the
    # status an execution of the same name already had).
    status: str | None = None
    error: BatchError | None = None


class BatchOut(BaseModel):
    results: list[BatchEntryOut]


class FromStepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256, description="The operation's name.")
    occurrence: int = Field(
        default=1, ge=1, le=100_000, description="Which operation of that name: 1 is the first."
    )


_FROM_STEP = "The operation to run again; default: the first failed step."
_VERSION = "Run this version (e.g. a fixed one); default: the version the source ran."


class RedriveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fromStep: FromStepBody | None = Field(default=None, description=_FROM_STEP)
    version: str | None = Field(
        default=None, pattern=r"^(\$LATEST|[0-9]{1,10})$", description=_VERSION
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="The new execution's name: a redrive is idempotent on it.",
    )


class RedriveFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["FAILED", "TIMED_OUT", "STOPPED"] = "FAILED"
    startedAfter: datetime | None = Field(default=None, description="ISO 8601 or epoch seconds.")
    startedBefore: datetime | None = Field(default=None, description="ISO 8601 or epoch seconds.")


class BatchRedriveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: RedriveFilter = Field(default_factory=RedriveFilter)
    fromStep: FromStepBody | None = Field(default=None, description=_FROM_STEP)
    version: str | None = Field(
        default=None, pattern=r"^(\$LATEST|[0-9]{1,10})$", description=_VERSION
    )
    max: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH, description="At most this many.")


class RedriveOut(BaseModel):
    executionArn: str
    redrivenFrom: str
    created: bool
    fromOperationId: str | None = None
    fromOperationName: str | None = None
    seededOperations: int | None = None


class BatchRedriveEntry(BaseModel):
    sourceArn: str
    redrive: RedriveOut | None = None
    error: BatchError | None = None


class BatchRedriveOut(BaseModel):
    results: list[BatchRedriveEntry]


def _from_step(body: FromStepBody | None) -> FromStep | None:
    return FromStep(body.name, body.occurrence) if body is not None else None


def _ms(when: datetime | None) -> int | None:
    return int(when.timestamp() * 1000) if when is not None else None


def _redrive_out(source: str, out: Redriven) -> RedriveOut:
    op = out.from_operation
    return RedriveOut(
        executionArn=out.execution.arn,
        redrivenFrom=source,
        created=out.created,
        fromOperationId=op.Id if op else None,
        fromOperationName=op.Name if op else None,
        seededOperations=out.seeded if out.created else None,
    )


_EVENTS = (
    "Delivered to an open wait for its type, else buffered for the next one (409 once "
    "the execution has ended, 429 while its buffer is full). Tenant code may call it "
    "with its sandbox key, for its own tenant's executions."
)
OPERATIONS = [
    Op("post", E + "/{Arn}/redrive",
       "Redrive a closed execution from a step: a new execution replaying what completed"
       " before it", response=RedriveOut, body=RedriveBody, errors=(404, 409, 429)),
    Op("post", F + "/{Name}/executions:redrive",
       "Redrive up to 100 closed executions matching a filter, not redriven yet",
       response=BatchRedriveOut, body=BatchRedriveBody, errors=(404,)),
    Op("post", F + "/{Name}/executions:batch",
       "Start up to 100 executions of one function version, each idempotent on its name",
       response=BatchOut, body=BatchBody, errors=(404,)),
    Op("post", E + "/{Arn}/events", "Send an event to an execution (by its ARN)",
       response=EventSent, body=EventBody, errors=(404, 409, 429), description=_EVENTS),
    Op("post", F + "/{Name}/executions/{ExecutionName}/events",
       "Send an event to an execution (by function and execution name)",
       response=EventSent, body=EventBody, errors=(404, 409, 429), description=_EVENTS),
]  # fmt: skip


class ExecutionsApi:
    def __init__(self, executions: ExecutionService) -> None:
        self.executions = executions

    def register(self, r: Router) -> None:
        r.add("POST", E + "/{Arn}/events", self.event_by_arn)
        r.add("POST", F + "/{Name}/executions/{ExecutionName}/events", self.event_by_name)
        r.add("POST", F + "/{Name}/executions:batch", self.start_batch)
        r.add("POST", E + "/{Arn}/redrive", self.redrive)
        r.add("POST", F + "/{Name}/executions:redrive", self.redrive_batch)

    def redrive(self, request: Request) -> Response:
        body = RedriveBody.model_validate(request.json())
        arn = request.params["Arn"]
        out = self.executions.redrive(
            request.tenant, arn, _from_step(body.fromStep), body.version, body.name
        )
        return Response.json(_redrive_out(arn, out).model_dump(mode="json", exclude_none=True))

    def redrive_batch(self, request: Request) -> Response:
        body = BatchRedriveBody.model_validate(request.json())
        query = ExecutionQuery(
            statuses=frozenset({ExecutionStatus(body.filter.status)}),
            started_after_ms=_ms(body.filter.startedAfter),
            started_before_ms=_ms(body.filter.startedBefore),
            limit=body.max,
        )
        results = self.executions.redrive_batch(
            request.tenant, request.params["Name"], query, _from_step(body.fromStep), body.version
        )
        out = [_batch_entry(source, result) for source, result in results]
        return Response.json(
            BatchRedriveOut(results=out).model_dump(mode="json", exclude_none=True)
        )

    def start_batch(self, request: Request) -> Response:
        body = BatchBody.model_validate(request.json())
        entries = [
            (e.name, json.dumps(e.input) if "input" in e.model_fields_set else None)
            for e in body.executions
        ]
        results = self.executions.start_batch(
            request.tenant, request.params["Name"], body.qualifier, entries
        )
        out = []
        for entry, result in zip(body.executions, results, strict=True):
            if isinstance(result, tuple):
                ex, created = result
                out.append(
                    BatchEntryOut(
                        name=ex.name, executionArn=ex.arn, created=created, status=ex.status.value
                    )
                )
            else:
                status, code, message = classify(result)
                error = BatchError(status=status, code=code, message=message)
                out.append(BatchEntryOut(name=entry.name, error=error))
        return Response.json(BatchOut(results=out).model_dump(mode="json"))

    def event_by_arn(self, request: Request) -> Response:
        return self._send(request, request.params["Arn"])

    def event_by_name(self, request: Request) -> Response:
        ex = self.executions.by_name(
            request.tenant, request.params["Name"], request.params["ExecutionName"]
        )
        return self._send(request, ex.arn)

    def _send(self, request: Request, arn: str) -> Response:
        body = EventBody.model_validate(request.json())
        payload = json.dumps(body.payload, separators=(",", ":"))
        outcome = self.executions.send_event(
            request.tenant, arn, body.type, payload, body.ttlSeconds
        )
        sent = EventSent(
            executionArn=arn, outcome="delivered" if outcome == "delivered" else "buffered"
        )
        return Response.json(sent.model_dump(mode="json"))


def _batch_entry(source: Execution, result: Redriven | TreadleError) -> BatchRedriveEntry:
    if isinstance(result, Redriven):
        return BatchRedriveEntry(sourceArn=source.arn, redrive=_redrive_out(source.arn, result))
    status, code, message = classify(result)
    error = BatchError(status=status, code=code, message=message)
    return BatchRedriveEntry(sourceArn=source.arn, error=error)
