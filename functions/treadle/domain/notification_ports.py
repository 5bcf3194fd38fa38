"""Ports of status-change notifications (`domain/notifications.py`).

Events are written by `ExecutionStore.commit` itself (the outbox row of a status
change); these ports read them back, and keep webhooks and their deliveries. Both have
an embedded (SQLite) and an AWS (DynamoDB) adapter passing `tests/contract/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from treadle.domain.notifications import Delivery, StatusEvent, Webhook


class StatusEventStore(Protocol):
    def read(
        self, tenant: str, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[list[StatusEvent], str]:
        """A tenant's events after `cursor` (None: the oldest kept) in commit order, at
        most `limit`, and the cursor to read on from (the same one when none is new).

        The cursor is opaque and stable; InvalidParameter if it is not one this store
        made. DynamoDB returns only events older than its settle window (see the adapter).
        """

    def tail(self, tenant: str, now_ms: int) -> str:
        """The cursor after every event a `read` at `now_ms` could return: reading on from
        it yields exactly what is committed after (a reader that starts from now)."""

    def unrelayed(self, limit: int) -> list[StatusEvent]:
        """Events not yet handed to webhooks and publishers (the outbox), oldest first."""

    def mark_relayed(self, events: Sequence[StatusEvent]) -> None:
        """Take events out of the outbox (they stay on the stream)."""

    def purge(self, before_ms: int) -> int:
        """Drop stream events older than `before_ms` (retention); how many went."""


class WebhookStore(Protocol):
    def create_webhook(self, hook: Webhook) -> None: ...

    def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        """NotFound if absent (or another tenant's)."""

    def list_webhooks(self, tenant: str) -> list[Webhook]:
        """Oldest first."""

    def delete_webhook(self, tenant: str, webhook_id: str) -> None:
        """NotFound if absent; its pending deliveries are dropped when next due."""

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Store new deliveries, due at their `next_attempt_ms`; one already stored (same
        webhook and event: the outbox is relayed at least once) is left as it is."""

    def due_deliveries(self, now_ms: int, limit: int) -> list[Delivery]:
        """Pending deliveries due at `now_ms`, earliest first."""

    def save_delivery(self, before: Delivery, after: Delivery) -> None:
        """Replace `before` (as read) by `after` (an attempt recorded);
        ConcurrentModification if another worker recorded one meanwhile."""

    def deliveries(self, tenant: str, webhook_id: str, limit: int) -> list[Delivery]:
        """A webhook's deliveries, newest event first."""


class EventPublisher(Protocol):
    """Where events go besides the stream and webhooks (EventBridge on AWS)."""

    def publish(self, events: Sequence[StatusEvent]) -> None:
        """All or raise a retryable TreadleError (the outbox keeps them)."""


class WebhookSender(Protocol):
    def send(self, url: str, secret: str, msg_id: str, now_ms: int, body: str) -> int:
        """POST a signed delivery; the HTTP status answered. A retryable TreadleError
        when no answer came (refused, timed out)."""
