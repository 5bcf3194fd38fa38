"""`/v1` routes of executions: events by type (`docs/events.md`).

- `POST /v1/executions/<arn>/events` (the ARN percent-encoded as one segment) and
  `POST /v1/functions/<name>/executions/<executionName>/events`, body `EventBody`:
  200 with `delivered` (an open wait took it) or `buffered`; 409 when the execution
  has ended; 429 when its buffer is full.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi import Op
from treadle.app.executions import ExecutionService
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


OPENAPI_OPERATIONS = [
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
