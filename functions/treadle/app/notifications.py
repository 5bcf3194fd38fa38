"""Status-change notifications, tenant-scoped: the event stream and webhooks.

`docs/notifications.md` is the user's view. The relay that hands events to webhooks
and publishers is `app/relay.py`.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from treadle.app.webhook_urls import check_url
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.notification_ports import StatusEventStore, WebhookStore
from treadle.domain.notifications import (
    DEFAULT_SOURCE,
    MAX_WEBHOOKS,
    STATUSES,
    Delivery,
    Webhook,
    envelope,
)
from treadle.domain.ports import Clock
from treadle.tenancy.errors import ServiceQuotaExceeded

MAX_WAIT_S = 20  # below API Gateway's 29 s integration timeout
MAX_PAGE = 100
POLL_INTERVAL_S = 0.25  # how often a long poll looks again
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class NotificationService:
    def __init__(
        self,
        events: StatusEventStore,
        webhooks: WebhookStore,
        clock: Clock,
        *,
        source: str = DEFAULT_SOURCE,
        allow_private: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.events = events
        self.webhooks = webhooks
        self.clock = clock
        self.source = source
        self.allow_private = allow_private
        self._sleep = sleep
        self._stopping = threading.Event()

    def stop(self) -> None:
        """The server is stopping: a held long poll answers at its next look (within
        POLL_INTERVAL_S) instead of holding the stop up; the client polls again."""
        self._stopping.set()

    # -- the stream ----------------------------------------------------------------------

    def stream(
        self, tenant: str, cursor: str | None, limit: int, wait_s: float, *, latest: bool = False
    ) -> tuple[list[dict[str, Any]], str]:
        """Events after `cursor`, waiting up to `wait_s` for one when none is new.
        `latest` (no cursor): from now on, none of the events already kept."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidParameter(f"limit must be between 1 and {MAX_PAGE}.")
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise InvalidParameter(f"waitSeconds must be between 0 and {MAX_WAIT_S}.")
        if latest:
            if cursor is not None:
                raise InvalidParameter("Give a cursor or start=latest, not both.")
            cursor = self.events.tail(tenant, self.clock.now_ms())
        deadline = time.monotonic() + wait_s
        while True:
            events, next_cursor = self.events.read(tenant, cursor, limit, self.clock.now_ms())
            left = deadline - time.monotonic()
            if events or left <= 0 or self._stopping.is_set():
                return [envelope(e, self.source) for e in events], next_cursor
            self._sleep(min(POLL_INTERVAL_S, left))

    # -- webhooks ------------------------------------------------------------------------

    def create_webhook(
        self,
        tenant: str,
        url: str,
        statuses: Sequence[str] | None,
        functions: Sequence[str] | None,
    ) -> Webhook:
        """A new webhook; its `secret` is shown to the caller this once."""
        check_url(url, allow_private=self.allow_private)
        for status in statuses or ():
            if status not in STATUSES:
                raise InvalidParameter(f"Unknown status {status!r}: one of {', '.join(STATUSES)}.")
        for name in functions or ():
            if not _FUNCTION_NAME.match(name):
                raise InvalidParameter(f"Invalid function name {name!r}.")
        if len(self.webhooks.list_webhooks(tenant)) >= MAX_WEBHOOKS:
            raise ServiceQuotaExceeded(f"A tenant has at most {MAX_WEBHOOKS} webhooks.")
        hook = Webhook(
            id="wh_" + secrets.token_hex(12),
            tenant=tenant,
            url=url,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            statuses=tuple(dict.fromkeys(statuses)) if statuses else None,
            functions=tuple(dict.fromkeys(functions)) if functions else None,
            created_ms=self.clock.now_ms(),
        )
        self.webhooks.create_webhook(hook)
        return hook

    def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        _check_id(webhook_id)
        return self.webhooks.get_webhook(tenant, webhook_id)

    def list_webhooks(self, tenant: str) -> list[Webhook]:
        return self.webhooks.list_webhooks(tenant)

    def delete_webhook(self, tenant: str, webhook_id: str) -> None:
        _check_id(webhook_id)
        self.webhooks.delete_webhook(tenant, webhook_id)

    def deliveries(self, tenant: str, webhook_id: str, limit: int) -> list[Delivery]:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidParameter(f"limit must be between 1 and {MAX_PAGE}.")
        self.get_webhook(tenant, webhook_id)  # another tenant's: not found
        return self.webhooks.deliveries(tenant, webhook_id, limit)


def _check_id(webhook_id: str) -> None:
    if not re.fullmatch(r"wh_[0-9a-f]{24}", webhook_id):
        raise NotFound(f"Webhook {webhook_id[:64]} not found.")
