"""`/v1/schedules`: cron schedules that start executions (`docs/schedules.md`).

- `POST /v1/schedules`, body `CreateScheduleBody`: 201 with `ScheduleOut`.
- `GET /v1/schedules[?limit=&marker=]`: the tenant's schedules by name, paged.
- `GET /v1/schedules/<name>`: its state: paused, next and last fire time, recent firings.
- `POST /v1/schedules/<name>/pause` and `/resume`: `ScheduleOut`.
- `POST /v1/schedules/<name>/trigger`: fire now (overlap policy applies); `FiringOut`.
- `DELETE /v1/schedules/<name>`: 204; the executions it started stay.

Another tenant's schedule is not found (404), as if it did not exist.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import LIMIT, Op
from treadle.app.schedules import NewSchedule, ScheduleService
from treadle.domain.schedules import MAX_CATCH_UP, NAME_PATTERN, CatchUp, Firing, Overlap, Schedule

S = "/v1/schedules"


class CreateScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique per tenant; executions are named <name>-<fire time, UTC>.",
    )
    cron: str = Field(
        min_length=1,
        max_length=256,
        description="5 fields (minute hour day-of-month month day-of-week) or @daily etc.",
    )
    timezone: str = Field(
        default="UTC", min_length=1, max_length=64, description="IANA zone of the cron."
    )
    function: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="A durable function.")
    qualifier: str = Field(
        default="$LATEST",
        pattern=r"^(\$LATEST|[a-zA-Z0-9_-]{1,128})$",
        description="A version, an alias or $LATEST, resolved at each firing.",
    )
    input: Any = Field(default=None, description="Any JSON value: each execution's event.")
    overlap: Literal["skip", "allow", "bufferOne"] = Field(
        default="skip", description="When the previous execution is still running."
    )
    catchUp: Literal["none", "last", "all"] = Field(
        default="none",
        description=f"Fire times missed while the platform was down (all: at most "
        f"{MAX_CATCH_UP}, the most recent).",
    )
    paused: bool = Field(default=False, description="Create it paused.")


class FiringOut(BaseModel):
    fireAt: int = Field(description="The fire time, epoch milliseconds.")
    outcome: Literal["started", "skipped", "buffered", "missed", "failed"]
    at: int = Field(description="When it was decided, epoch milliseconds.")
    manual: bool = Field(description="A trigger, not the cron.")
    executionArn: str | None = None
    reason: str | None = None


class ScheduleOut(BaseModel):
    name: str
    cron: str
    timezone: str
    function: str
    qualifier: str
    input: Any = None
    overlap: Literal["skip", "allow", "bufferOne"]
    catchUp: Literal["none", "last", "all"]
    paused: bool
    createdAt: int
    nextFireAt: int | None = Field(description="Epoch milliseconds; null while paused.")
    lastFireAt: int | None
    lastExecutionArn: str | None
    bufferedFireAt: int | None = Field(description="A firing waiting for the previous one.")
    recentFirings: list[FiringOut] = Field(description="The latest firings, oldest first.")


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]
    nextMarker: str | None


def firing_out(firing: Firing) -> FiringOut:
    return FiringOut(
        fireAt=firing.fire_ms,
        outcome=firing.outcome.value,
        at=firing.at_ms,
        manual=firing.manual,
        executionArn=firing.execution_arn,
        reason=firing.reason,
    )


def schedule_out(s: Schedule) -> ScheduleOut:
    return ScheduleOut(
        name=s.name,
        cron=s.cron,
        timezone=s.timezone,
        function=s.function_name,
        qualifier=s.qualifier,
        input=json.loads(s.input_payload) if s.input_payload is not None else None,
        overlap=s.overlap.value,
        catchUp=s.catch_up.value,
        paused=s.paused,
        createdAt=s.created_ms,
        nextFireAt=s.next_fire_ms,
        lastFireAt=s.last_fire_ms,
        lastExecutionArn=s.last_execution_arn,
        bufferedFireAt=s.buffered_fire_ms,
        recentFirings=[firing_out(f) for f in s.recent],
    )


# For the /v1 OpenAPI document (`api/openapi.py`).
OPERATIONS = [
    Op("post", S, "Create a schedule: a cron expression starting executions of a function",
       201, ScheduleOut, CreateScheduleBody, errors=(404, 409)),
    Op("get", S, "List the tenant's schedules, by name", response=ScheduleList, query=LIMIT),
    Op("get", S + "/{Schedule}", "A schedule and its state: next, last and recent firings",
       response=ScheduleOut, errors=(404,)),
    Op("delete", S + "/{Schedule}", "Delete a schedule (its executions stay)", 204,
       errors=(404,)),
    Op("post", S + "/{Schedule}/pause", "Pause a schedule", response=ScheduleOut,
       errors=(404,)),
    Op("post", S + "/{Schedule}/resume", "Resume a schedule from now on", response=ScheduleOut,
       errors=(404,)),
    Op("post", S + "/{Schedule}/trigger", "Fire a schedule now (its overlap policy applies)",
       response=FiringOut, errors=(402, 404, 409, 429)),
]  # fmt: skip


class SchedulesApi:
    def __init__(self, schedules: ScheduleService) -> None:
        self.schedules = schedules

    def register(self, r: Router) -> None:
        r.add("POST", S, self.create)
        r.add("GET", S, self.list)
        r.add("GET", S + "/{Schedule}", self.get)
        r.add("DELETE", S + "/{Schedule}", self.delete)
        r.add("POST", S + "/{Schedule}/pause", self.pause)
        r.add("POST", S + "/{Schedule}/resume", self.resume)
        r.add("POST", S + "/{Schedule}/trigger", self.trigger)

    def create(self, request: Request) -> Response:
        body = CreateScheduleBody.model_validate(request.json())
        new = NewSchedule(
            name=body.name,
            cron=body.cron,
            function_name=body.function,
            timezone=body.timezone,
            qualifier=body.qualifier,
            input=body.input,
            overlap=Overlap(body.overlap),
            catch_up=CatchUp(body.catchUp),
            paused=body.paused,
        )
        made = self.schedules.create(request.tenant, new)
        return Response.json(schedule_out(made).model_dump(mode="json"), status=201)

    def list(self, request: Request) -> Response:
        limit = request.limit(50)
        found, marker = self.schedules.list(request.tenant, limit, request.q("marker") or None)
        out = ScheduleList(schedules=[schedule_out(s) for s in found], nextMarker=marker)
        return Response.json(out.model_dump(mode="json"))

    def get(self, request: Request) -> Response:
        found = self.schedules.get(request.tenant, request.params["Schedule"])
        return Response.json(schedule_out(found).model_dump(mode="json"))

    def delete(self, request: Request) -> Response:
        self.schedules.delete(request.tenant, request.params["Schedule"])
        return Response(status=204)

    def pause(self, request: Request) -> Response:
        paused = self.schedules.pause(request.tenant, request.params["Schedule"])
        return Response.json(schedule_out(paused).model_dump(mode="json"))

    def resume(self, request: Request) -> Response:
        resumed = self.schedules.resume(request.tenant, request.params["Schedule"])
        return Response.json(schedule_out(resumed).model_dump(mode="json"))

    def trigger(self, request: Request) -> Response:
        firing = self.schedules.trigger(request.tenant, request.params["Schedule"])
        return Response.json(firing_out(firing).model_dump(mode="json"))
