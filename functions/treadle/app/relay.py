"""The relay: hands committed status-change events to publishers and webhooks.

Each `run_once` (a loop in the embedded platform; the sweep on AWS):

1. takes events from the outbox (oldest first), publishes them (EventBridge on AWS),
   turns each into one delivery per matching webhook, and only then takes them out of
   the outbox: a crash in between relays them again, and a delivery already stored for
   that webhook and event stays as it is (at least once, never a duplicate delivery);
2. attempts the deliveries that are due, on a small pool (a slow receiver waits its
   timeout without holding the others), and records each attempt: delivered on a 2xx,
   else retried on the `RETRY_SCHEDULE_S` schedule or given up after `MAX_ATTEMPTS`;
3. drops stream events past their retention (SQLite; DynamoDB's TTL does it there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from treadle.app.webhook_urls import check_resolved
from treadle.domain.errors import ConcurrentModification, NotFound, TreadleError
from treadle.domain.notification_ports import (
    EventPublisher,
    StatusEventStore,
    WebhookSender,
    WebhookStore,
)
from treadle.domain.notifications import (
    DEFAULT_SOURCE,
    RETENTION_MS,
    Attempt,
    Delivery,
    Webhook,
    delivery_for,
    envelope,
)
from treadle.domain.ports import Clock

log = logging.getLogger(__name__)

OUTBOX_BATCH = 100
DELIVERY_BATCH = 32  # x 10 s timeout / 8 workers: within the sweep Lambda's minute
PURGE_EVERY_MS = 60_000


@dataclass(frozen=True)
class RelayReport:
    relayed: int  # events taken out of the outbox
    attempted: int  # delivery attempts made
    delivered: int


class Relay:
    def __init__(
        self,
        events: StatusEventStore,
        webhooks: WebhookStore,
        sender: WebhookSender,
        clock: Clock,
        *,
        publishers: Sequence[EventPublisher] = (),
        source: str = DEFAULT_SOURCE,
        allow_private: bool = False,
        workers: int = 8,
    ) -> None:
        self.events = events
        self.webhooks = webhooks
        self.sender = sender
        self.clock = clock
        self.publishers = publishers
        self.source = source
        self.allow_private = allow_private
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhooks")
        self._purged_ms = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run_once(self) -> RelayReport:
        relayed = 0
        while True:
            batch = self.events.unrelayed(OUTBOX_BATCH)
            if not batch:
                break
            for publisher in self.publishers:
                publisher.publish(batch)  # raises: the outbox keeps them for the next run
            hooks: dict[str, list[Webhook]] = {}
            deliveries = []
            for event in batch:
                if event.tenant not in hooks:
                    hooks[event.tenant] = self.webhooks.list_webhooks(event.tenant)
                now = self.clock.now_ms()
                wanting = [h for h in hooks[event.tenant] if h.wants(event)]
                deliveries += [delivery_for(h, event, now) for h in wanting]
            self.webhooks.add_deliveries(deliveries)
            self.events.mark_relayed(batch)
            relayed += len(batch)
            if len(batch) < OUTBOX_BATCH:
                break
        due = self.webhooks.due_deliveries(self.clock.now_ms(), DELIVERY_BATCH)
        outcomes = list(self._pool.map(self._attempt, due))
        now = self.clock.now_ms()
        if now - self._purged_ms >= PURGE_EVERY_MS:
            self._purged_ms = now
            self.events.purge(now - RETENTION_MS)
        return RelayReport(relayed, len(due), sum(1 for d in outcomes if d))

    def _attempt(self, delivery: Delivery) -> bool:
        """One attempt of one delivery, recorded; whether it was delivered."""
        now = self.clock.now_ms()
        try:
            hook = self.webhooks.get_webhook(delivery.tenant, delivery.webhook_id)
        except NotFound:
            attempt = Attempt(at_ms=now, error="The webhook was deleted.")
            done = delivery.after(attempt).model_copy(
                update={"state": "FAILED", "next_attempt_ms": None}
            )
            self._save(delivery, done)
            return False
        body = json.dumps(envelope(delivery.event, self.source), separators=(",", ":"))
        try:
            check_resolved(hook.url, allow_private=self.allow_private)
            code = self.sender.send(hook.url, hook.secret, delivery.event.id, now, body)
            attempt = Attempt(at_ms=now, status_code=code)
        except TreadleError as exc:
            attempt = Attempt(at_ms=now, error=exc.message[:500])
        except Exception as exc:  # never let one receiver stop the relay
            log.exception("webhook %s: attempt failed", hook.id)
            attempt = Attempt(at_ms=now, error=f"{type(exc).__name__}: {exc}"[:500])
        after = delivery.after(attempt)
        self._save(delivery, after)
        return after.state == "DELIVERED"

    def _save(self, before: Delivery, after: Delivery) -> None:
        try:
            self.webhooks.save_delivery(before, after)
        except ConcurrentModification:
            # Another relay recorded this attempt's slot first; the receiver may see the
            # event twice (at least once), and keys on `webhook-id` to deduplicate.
            log.info("delivery %s of %s recorded elsewhere", before.key, before.webhook_id)
