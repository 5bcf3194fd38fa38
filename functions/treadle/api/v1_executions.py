"""`/v1` routes of executions: events by type (`docs/events.md`).

- `POST /v1/executions/<arn>/events` (the ARN percent-encoded as one segment) and
  `POST /v1/functions/<name>/executions/<executionName>/events`, body `EventBody`:
  200 with `delivered` (an open wait took it) or `buffered`; 409 when the execution
  has ended; 429 when its buffer is full.
- `POST /v1/functions/<name>/executions:batch`, body `BatchBody`: up to 100 starts of
  one version; 200 with, per entry in order, its execution ARN (`created` false when
  the name was started before with the same input) or its own error.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from treadle.api.errors import classify
from treadle.api.http import Request, Response, Router
from treadle.api.openapi import Op
from treadle.app.executions import MAX_BATCH, ExecutionService
from treadle.domain.engine.events import DEFAULT_TTL_S, EVENT_TYPE_PATTERN, MAX_TTL_S

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
    error: BatchError | None = None


class BatchOut(BaseModel):
    results: list[BatchEntryOut]


OPENAPI_OPERATIONS = [
    Op("post", F + "/{Name}/executions:batch",
       "Start up to 100 executions of one function version, each idempotent on its name",
       response=BatchOut, body=BatchBody),
    Op("post", E + "/{Arn}/events", "Send an event to an execution (by its ARN)",
       response=EventSent, body=EventBody),
    Op("post", F + "/{Name}/executions/{ExecutionName}/events",
       "Send an event to an execution (by function and execution name)",
       response=EventSent, body=EventBody),
]  # fmt: skip


class ExecutionsApi:
    def __init__(self, executions: ExecutionService) -> None:
        self.executions = executions

    def register(self, r: Router) -> None:
        r.add("POST", E + "/{Arn}/events", self.event_by_arn)
        r.add("POST", F + "/{Name}/executions/{ExecutionName}/events", self.event_by_name)
        r.add("POST", F + "/{Name}/executions:batch", self.start_batch)

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
                out.append(BatchEntryOut(name=ex.name, executionArn=ex.arn, created=created))
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
