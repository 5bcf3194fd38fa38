"""`/v1` routes of status-change notifications (`docs/notifications.md`).

- `GET /v1/executions/events?cursor=&limit=&waitSeconds=&start=`: the tenant's
  status-change events in commit order, EventBridge-shaped; `nextCursor` reads on (long
  poll: up to `waitSeconds` for an event when none is new); `start=latest` (no cursor)
  skips what is kept and waits for what comes next.
- `POST /v1/webhooks` (`WebhookBody`): 201 with the webhook and its signing secret,
  shown this once; `GET /v1/webhooks`, `GET|DELETE /v1/webhooks/{WebhookId}`;
  `GET /v1/webhooks/{WebhookId}/deliveries?limit=`: the delivery history.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op
from treadle.app.notifications import MAX_PAGE, MAX_WAIT_S, NotificationService
from treadle.domain.errors import InvalidParameter
from treadle.domain.notifications import MAX_WEBHOOKS, STATUSES, Delivery, Webhook, iso_ms

W = "/v1/webhooks"


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)
    waitSeconds: int = Field(default=0, ge=0, le=MAX_WAIT_S)
    start: Literal["oldest", "latest"] = "oldest"


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http:// or https://")
    statuses: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=len(STATUSES),
        description="Only these statuses; default every one: " + ", ".join(STATUSES),
    )
    functions: list[str] | None = Field(
        default=None, min_length=1, max_length=50, description="Only these function names."
    )


class StatusChangeDetail(BaseModel):
    durableExecutionArn: str
    durableExecutionName: str
    functionArn: str
    status: str
    startTimestamp: str
    endTimestamp: str | None = None
    previousStatus: str | None = None


class StatusChangeEvent(BaseModel):
    """AWS's "Durable Execution Status Change" event, as EventBridge delivers it."""

    model_config = ConfigDict(populate_by_name=True)

    version: str
    id: str
    detail_type: str = Field(alias="detail-type")
    source: str
    account: str
    time: str
    region: str
    resources: list[str]
    detail: StatusChangeDetail


class EventPage(BaseModel):
    events: list[StatusChangeEvent]
    nextCursor: str = Field(description="Pass back to read on; the same one if none is new.")


class WebhookOut(BaseModel):
    id: str
    url: str
    statuses: list[str] | None
    functions: list[str] | None
    createdAt: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...), shown only now.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class AttemptOut(BaseModel):
    at: str
    statusCode: int | None = None
    error: str | None = None


class DeliveryOut(BaseModel):
    eventId: str
    executionArn: str
    status: str = Field(description="The execution status the event reports.")
    state: str = Field(description="PENDING, DELIVERED or FAILED (given up).")
    attempts: list[AttemptOut]
    nextAttemptAt: str | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)


def _webhook_out(hook: Webhook) -> dict[str, Any]:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        statuses=list(hook.statuses) if hook.statuses is not None else None,
        functions=list(hook.functions) if hook.functions is not None else None,
        createdAt=iso_ms(hook.created_ms),
    ).model_dump(mode="json")


def _delivery_out(d: Delivery) -> dict[str, Any]:
    return DeliveryOut(
        eventId=d.event.id,
        executionArn=d.event.arn,
        status=d.event.status,
        state=d.state,
        attempts=[
            AttemptOut(at=iso_ms(a.at_ms), statusCode=a.status_code, error=a.error)
            for a in d.attempts
        ],
        nextAttemptAt=iso_ms(d.next_attempt_ms) if d.next_attempt_ms is not None else None,
    ).model_dump(mode="json", exclude_none=True)


def _query(request: Request, model: type[BaseModel]) -> Any:
    values = {k: v[-1] for k, v in request.query.items()}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "query"
        raise InvalidParameter(f"Invalid query parameter {where}: {first['msg']}.") from None


_PAGE = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}}
OPERATIONS = [
    Op("get", "/v1/executions/events",
       "The tenant's execution status changes in commit order, cursor-paged (long poll)",
       response=EventPage,
       query={"cursor": {"type": "string", "maxLength": 200}, **_PAGE,
              "waitSeconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_S},
              "start": {"type": "string", "enum": ["oldest", "latest"]}}),
    Op("post", W, f"Create a webhook (at most {MAX_WEBHOOKS}); its secret is shown once",
       201, WebhookCreated, WebhookBody, errors=(402,)),
    Op("get", W, "List webhooks (no secrets)", response=WebhookList),
    Op("get", W + "/{WebhookId}", "Describe a webhook (no secret)", response=WebhookOut,
       errors=(404,)),
    Op("delete", W + "/{WebhookId}", "Delete a webhook", 204, errors=(404,)),
    Op("get", W + "/{WebhookId}/deliveries", "A webhook's deliveries, newest first",
       response=DeliveryList, query=_PAGE, errors=(404,)),
]  # fmt: skip


class NotificationsApi:
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    def register(self, r: Router) -> None:
        r.add("GET", "/v1/executions/events", self.stream)
        r.add("POST", W, self.create)
        r.add("GET", W, self.list)
        r.add("GET", W + "/{WebhookId}", self.get)
        r.add("DELETE", W + "/{WebhookId}", self.delete)
        r.add("GET", W + "/{WebhookId}/deliveries", self.deliveries)

    def stream(self, request: Request) -> Response:
        q = _query(request, StreamQuery)
        events, cursor = self.notifications.stream(
            request.tenant, q.cursor, q.limit, q.waitSeconds, latest=q.start == "latest"
        )
        return Response.json({"events": events, "nextCursor": cursor})

    def create(self, request: Request) -> Response:
        body = WebhookBody.model_validate(request.json())
        hook = self.notifications.create_webhook(
            request.tenant, body.url, body.statuses, body.functions
        )
        return Response.json({**_webhook_out(hook), "secret": hook.secret}, status=201)

    def list(self, request: Request) -> Response:
        hooks = self.notifications.list_webhooks(request.tenant)
        return Response.json({"webhooks": [_webhook_out(h) for h in hooks]})

    def get(self, request: Request) -> Response:
        hook = self.notifications.get_webhook(request.tenant, request.params["WebhookId"])
        return Response.json(_webhook_out(hook))

    def delete(self, request: Request) -> Response:
        self.notifications.delete_webhook(request.tenant, request.params["WebhookId"])
        return Response(status=204)

    def deliveries(self, request: Request) -> Response:
        q = _query(request, DeliveryQuery)
        out = self.notifications.deliveries(request.tenant, request.params["WebhookId"], q.limit)
        return Response.json({"deliveries": [_delivery_out(d) for d in out]})
