"""Status-change notifications: the event each execution status change publishes.

A `StatusEvent` is written by the very commit that changes the status (a transactional
outbox, `engine/working_set.to_commit`), so no status change exists without its event.
It is rendered as AWS's EventBridge "Durable Execution Status Change" event, with AWS's
field names (`docs/notifications.md`), for the stream, webhooks and EventBridge alike.

Webhooks (`Webhook`) subscribe a tenant's URL to those events; each event a webhook
takes becomes a `Delivery`, attempted on the `RETRY_SCHEDULE_S` schedule until the
receiver answers 2xx or the attempts run out.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from treadle.domain.errors import InvalidParameter
from treadle.domain.models import TERMINAL_EXECUTION_STATUSES, Execution, ExecutionStatus

DETAIL_TYPE: Final = "Durable Execution Status Change"
DEFAULT_SOURCE: Final = "treadle"
# How long the stream keeps events (SQLite: purged by the delivery loop; DynamoDB: TTL).
RETENTION_MS: Final = 7 * 86_400_000
# Delay before attempt n+1 after attempt n fails (the first attempt is immediate): about
# a day in all, then the delivery is given up (`docs/notifications.md`).
RETRY_SCHEDULE_S: Final = (5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
MAX_ATTEMPTS: Final = len(RETRY_SCHEDULE_S) + 1
# Execution statuses a webhook may filter on (a queued start is a commit whose status
# is QUEUED, published by `to_commit` like any other change).
STATUSES: Final = tuple(s.value for s in ExecutionStatus)

_EVENT_IDS = uuid.UUID("0d6f4f5e-61a4-4f0e-9a53-6b1d0f3f1c2a")


class StatusEvent(BaseModel):
    """One execution status change, as stored in the outbox and the stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # stable across retries of its commit: receivers deduplicate on it
    tenant: str
    time_ms: int  # when the change was committed; orders a tenant's stream
    arn: str
    name: str
    function_arn: str  # qualified with the version the execution runs
    status: str
    previous_status: str | None  # None: the execution started with this change
    start_ms: int
    end_ms: int | None = None


def status_event(ex: Execution, previous: ExecutionStatus | None, now_ms: int) -> StatusEvent:
    """The event of `ex` entering its current status from `previous` at `now_ms`.

    The id is derived from the execution and the record version the commit writes, so a
    commit computed again after a lost race gets another id only if it is another change.
    """
    time_ms = max(now_ms, ex.status_changed_ms + 1)
    ex.status_changed_ms = time_ms
    return StatusEvent(
        id=str(uuid.uuid5(_EVENT_IDS, f"{ex.arn}#{ex.version_seq + 1}")),
        tenant=ex.tenant,
        time_ms=time_ms,
        arn=ex.arn,
        name=ex.name,
        function_arn=ex.arn.split("/durable-execution/", 1)[0],
        status=ex.status.value,
        previous_status=previous.value if previous is not None else None,
        start_ms=ex.start_ms,
        end_ms=ex.end_ms if ex.status in TERMINAL_EXECUTION_STATUSES else None,
    )


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as AWS writes `startTimestamp`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def envelope(event: StatusEvent, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The event as EventBridge delivers it: its envelope and AWS's `detail` fields.

    `previousStatus` is Treadle's addition (it tells a resume from a start); PAUSED is a
    status AWS does not publish.
    """
    detail: dict[str, Any] = {
        "durableExecutionArn": event.arn,
        "durableExecutionName": event.name,
        "functionArn": event.function_arn,
        "status": event.status,
        "startTimestamp": iso_ms(event.start_ms),
    }
    if event.end_ms is not None:
        detail["endTimestamp"] = iso_ms(event.end_ms)
    if event.previous_status is not None:
        detail["previousStatus"] = event.previous_status
    return {
        "version": "0",
        "id": event.id,
        "detail-type": DETAIL_TYPE,
        "source": source,
        "account": event.tenant,
        "time": iso_ms(event.time_ms)[:19] + "Z",
        "region": event.arn.split(":")[3],
        "resources": [],
        "detail": detail,
    }


class Webhook(BaseModel):
    """A tenant's subscription of a URL to its status-change events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    tenant: str
    url: str
    secret: str  # Standard Webhooks `whsec_...`: shown once, kept to sign deliveries
    statuses: tuple[str, ...] | None = None  # None: every status
    functions: tuple[str, ...] | None = None  # function names; None: every function
    created_ms: int

    def wants(self, event: StatusEvent) -> bool:
        if event.tenant != self.tenant:
            return False
        if self.statuses is not None and event.status not in self.statuses:
            return False
        name = event.function_arn.split(":")[6]
        return self.functions is None or name in self.functions


class Attempt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_ms: int
    status_code: int | None = None  # None: no HTTP answer (see `error`)
    error: str | None = None


DeliveryState = Literal["PENDING", "DELIVERED", "FAILED"]


class Delivery(BaseModel):
    """One event to one webhook, with the history of its attempts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str
    webhook_id: str
    event: StatusEvent
    state: DeliveryState = "PENDING"
    attempts: tuple[Attempt, ...] = ()
    next_attempt_ms: int | None = None  # None once delivered or given up

    @property
    def key(self) -> str:
        """Orders a webhook's deliveries by event time; unique per webhook."""
        return f"{self.event.time_ms:013d}#{self.event.id}"

    def after(self, attempt: Attempt) -> Delivery:
        """This delivery once `attempt` is recorded: delivered, retried later or given up."""
        attempts = (*self.attempts, attempt)
        code = attempt.status_code
        if code is not None and 200 <= code < 300:
            return self.model_copy(
                update={"attempts": attempts, "state": "DELIVERED", "next_attempt_ms": None}
            )
        if len(attempts) >= MAX_ATTEMPTS:
            return self.model_copy(
                update={"attempts": attempts, "state": "FAILED", "next_attempt_ms": None}
            )
        delay_ms = RETRY_SCHEDULE_S[len(attempts) - 1] * 1000
        return self.model_copy(
            update={"attempts": attempts, "next_attempt_ms": attempt.at_ms + delay_ms}
        )


def delivery_for(hook: Webhook, event: StatusEvent, now_ms: int) -> Delivery:
    """A new delivery, due at once (`now_ms`: when the relay takes the event)."""
    return Delivery(tenant=hook.tenant, webhook_id=hook.id, event=event, next_attempt_ms=now_ms)


WEBHOOK_ID_PATTERN: Final = r"^wh_[0-9a-f]{24}$"
MAX_WEBHOOKS: Final = 20  # per tenant: each event fans out to every matching one


_CURSOR_PREFIX: Final = "c1:"


def encode_cursor(position: str) -> str:
    """An opaque stream cursor around an adapter's position (its sort key)."""
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position inside a cursor; InvalidParameter for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if not raw.startswith(_CURSOR_PREFIX) or len(cursor) > 200:
        raise InvalidParameter(f"Invalid cursor {cursor[:80]!r}: pass back a nextCursor.")
    return raw[len(_CURSOR_PREFIX) :]
