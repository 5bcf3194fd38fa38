"""DynamoDB adapters of the notification ports: the status-event stream and webhooks.

A status change's commit (`commits.CommitWriter.plan`) adds two items to its
transaction (`status_event_items`): the stream item in the tenant's partition, sorted
by commit time, and an outbox item in one of `OUTBOX_SHARDS` partitions, which the relay
deletes once it has handed the event to webhooks and EventBridge. Both carry `ttl`
(`RETENTION_MS`, plus a grace for the outbox).

Ordering: commits of different executions run concurrently, each keyed by its own
clock reading, so a commit keyed at t may become visible after one keyed at t + 5 ms.
A reader therefore gets only events older than `settle_ms` (default 3 s), a window far
longer than a commit takes from its clock reading to its transaction; within one
execution the keys strictly increase (`Execution.status_changed_ms`), whatever the
hosts' clocks. `docs/notifications.md` states this guarantee.

Webhooks: `W#<tenant>` / `<webhook id>`. Deliveries: the record in `WD#<tenant>#<id>` /
`<event time>#<event id>`, and while it is pending, a queue item in one of the
`QUEUE_SHARDS` partitions `WQ#<shard>` / `<due ms>#<tenant>#<id>#<key>` that the relay
reads by due time; an attempt moves both in one transaction, conditioned on the record's
attempt count, so two relays never record the same attempt twice.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import items as it
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.optimistic import transact
from treadle.adapters.aws.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from treadle.domain.errors import AlreadyExists, ConcurrentModification, NotFound
from treadle.domain.notifications import (
    RETENTION_MS,
    Delivery,
    StatusEvent,
    Webhook,
    decode_cursor,
    encode_cursor,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

STREAM_PREFIX: Final = "S#"
OUTBOX_PREFIX: Final = "O#"
WEBHOOK_PREFIX: Final = "W#"
DELIVERY_PREFIX: Final = "WD#"
QUEUE_PREFIX: Final = "WQ#"
OUTBOX_SHARDS: Final = 4
QUEUE_SHARDS: Final = 4
BODY: Final = "body"
ATTEMPTS: Final = "attempts"
DEFAULT_SETTLE_MS: Final = 3000
_OUTBOX_GRACE_MS: Final = 7 * 86_400_000  # an outbox item outlives a week-long outage


def _shard(text: str, shards: int) -> str:
    return str(zlib.crc32(text.encode()) % shards)


def _ttl(ms: int) -> AttributeValueTypeDef:
    return {"N": str(ms // 1000)}


def _event_sk(event: StatusEvent) -> str:
    return f"{event.time_ms:013d}#{event.id}"


def status_event_items(table: str, event: StatusEvent) -> list[TransactWriteItemTypeDef]:
    """The stream and outbox items of a commit's status change (unconditional puts:
    the same commit written again writes the same items)."""
    body: AttributeValueTypeDef = {"S": event.model_dump_json()}
    sk = _event_sk(event)
    stream: Item = {
        PARTITION_KEY: {"S": STREAM_PREFIX + event.tenant},
        SORT_KEY: {"S": sk},
        BODY: body,
        TTL_ATTRIBUTE: _ttl(event.time_ms + RETENTION_MS),
    }
    outbox: Item = {
        PARTITION_KEY: {"S": OUTBOX_PREFIX + _shard(event.id, OUTBOX_SHARDS)},
        SORT_KEY: {"S": sk},
        BODY: body,
        TTL_ATTRIBUTE: _ttl(event.time_ms + RETENTION_MS + _OUTBOX_GRACE_MS),
    }
    return [{"Put": {"TableName": table, "Item": item}} for item in (stream, outbox)]


def _event(item: Item) -> StatusEvent:
    return StatusEvent.model_validate_json(it.text(item, BODY))


class DynamoStatusEvents:
    def __init__(
        self, client: DynamoDBClient, table_name: str, *, settle_ms: int = DEFAULT_SETTLE_MS
    ) -> None:
        self._table = Table(client, table_name)
        self._settle_ms = settle_ms

    def read(
        self, tenant: str, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[list[StatusEvent], str]:
        after = decode_cursor(cursor) if cursor is not None else "0"
        settled = f"{now_ms - self._settle_ms:013d}"
        events: list[StatusEvent] = []
        for item in self._table.query(
            f"read status events of {tenant}",
            key_condition="#pk = :pk AND #sk > :after",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            values={":pk": {"S": STREAM_PREFIX + tenant}, ":after": {"S": after}},
            page_size=limit,
        ):
            sk = it.text(item, SORT_KEY)
            if sk[:13] >= settled:
                break  # younger than the settle window: an older commit may still land
            events.append(_event(item))
            after = sk
            if len(events) >= limit:
                break
        return events, encode_cursor(after)

    def tail(self, tenant: str, now_ms: int) -> str:
        # No read needed: `read` hands out only what is older than the settle window, so
        # the window's edge is the tail (a sort key `<time>#...` sorts after `<time>`).
        return encode_cursor(f"{now_ms - self._settle_ms:013d}")

    def unrelayed(self, limit: int) -> list[StatusEvent]:
        # The oldest `limit` of each shard, then the oldest `limit` of those.
        found: list[StatusEvent] = []
        for shard in range(OUTBOX_SHARDS):
            items = self._table.query(
                "read the status-event outbox",
                key_condition="#pk = :pk",
                names={"#pk": PARTITION_KEY},
                values={":pk": {"S": f"{OUTBOX_PREFIX}{shard}"}},
                page_size=limit,
            )
            found += [_event(item) for _, item in zip(range(limit), items, strict=False)]
        found.sort(key=lambda e: (e.time_ms, e.id))
        return found[:limit]

    def mark_relayed(self, events: Sequence[StatusEvent]) -> None:
        keys = [(OUTBOX_PREFIX + _shard(e.id, OUTBOX_SHARDS), _event_sk(e)) for e in events]
        self._table.batch_delete(keys, "clear relayed status events")

    def purge(self, before_ms: int) -> int:
        return 0  # TTL removes stream items (`RETENTION_MS` after their commit)


def _delivery_item(d: Delivery) -> Item:
    return {
        PARTITION_KEY: {"S": f"{DELIVERY_PREFIX}{d.tenant}#{d.webhook_id}"},
        SORT_KEY: {"S": d.key},
        BODY: {"S": d.model_dump_json()},
        ATTEMPTS: {"N": str(len(d.attempts))},
        TTL_ATTRIBUTE: _ttl(d.event.time_ms + RETENTION_MS),
    }


def _queue_key(d: Delivery, due_ms: int) -> Item:
    where = f"{d.tenant}#{d.webhook_id}#{d.key}"
    return it.key(QUEUE_PREFIX + _shard(where, QUEUE_SHARDS), f"{due_ms:013d}#{where}")


class DynamoWebhookStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._table = Table(client, table_name)

    def create_webhook(self, hook: Webhook) -> None:
        item: Item = {
            PARTITION_KEY: {"S": WEBHOOK_PREFIX + hook.tenant},
            SORT_KEY: {"S": hook.id},
            BODY: {"S": hook.model_dump_json()},
        }
        transact(
            self._table,
            [
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    }
                }
            ],
            f"create webhook {hook.id}",
            ["webhook"],
            lambda _: AlreadyExists(f"Webhook {hook.id} already exists."),
        )

    def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        item = self._table.get(it.key(WEBHOOK_PREFIX + tenant, webhook_id), "read webhook")
        if item is None:
            raise NotFound(f"Webhook {webhook_id} not found.")
        return Webhook.model_validate_json(it.text(item, BODY))

    def list_webhooks(self, tenant: str) -> list[Webhook]:
        hooks = [
            Webhook.model_validate_json(it.text(item, BODY))
            for item in self._table.query(
                f"list webhooks of {tenant}",
                key_condition="#pk = :pk",
                names={"#pk": PARTITION_KEY},
                values={":pk": {"S": WEBHOOK_PREFIX + tenant}},
            )
        ]
        return sorted(hooks, key=lambda h: (h.created_ms, h.id))

    def delete_webhook(self, tenant: str, webhook_id: str) -> None:
        transact(
            self._table,
            [
                {
                    "Delete": {
                        "TableName": self._table.name,
                        "Key": it.key(WEBHOOK_PREFIX + tenant, webhook_id),
                        "ConditionExpression": "attribute_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    }
                }
            ],
            f"delete webhook {webhook_id}",
            ["webhook"],
            lambda _: NotFound(f"Webhook {webhook_id} not found."),
        )

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            due = d.next_attempt_ms if d.next_attempt_ms is not None else d.event.time_ms
            queue: Item = {**_queue_key(d, due), BODY: {"S": d.model_dump_json()}}
            try:
                transact(
                    self._table,
                    [
                        {
                            "Put": {
                                "TableName": self._table.name,
                                "Item": _delivery_item(d),
                                "ConditionExpression": "attribute_not_exists(#pk)",
                                "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                            }
                        },
                        {"Put": {"TableName": self._table.name, "Item": queue}},
                    ],
                    f"add delivery of {d.event.id} to {d.webhook_id}",
                    ["delivery", "queue"],
                    lambda _: AlreadyExists("delivery exists"),
                )
            except AlreadyExists:
                continue  # relayed before: the first one stands

    def due_deliveries(self, now_ms: int, limit: int) -> list[Delivery]:
        found: list[Delivery] = []
        for shard in range(QUEUE_SHARDS):
            items = self._table.query(
                "read due deliveries",
                key_condition="#pk = :pk AND #sk <= :now",
                names={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
                values={
                    ":pk": {"S": f"{QUEUE_PREFIX}{shard}"},
                    ":now": {"S": f"{now_ms:013d}#~"},
                },
                page_size=limit,
            )
            found += [
                Delivery.model_validate_json(it.text(item, BODY))
                for _, item in zip(range(limit), items, strict=False)
            ]
        found.sort(key=lambda d: d.next_attempt_ms or 0)
        return found[:limit]

    def save_delivery(self, before: Delivery, after: Delivery) -> None:
        name = self._table.name
        due = before.next_attempt_ms if before.next_attempt_ms is not None else 0
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": name,
                    "Item": _delivery_item(after),
                    "ConditionExpression": "#a = :a",
                    "ExpressionAttributeNames": {"#a": ATTEMPTS},
                    "ExpressionAttributeValues": {":a": {"N": str(len(before.attempts))}},
                }
            },
            {"Delete": {"TableName": name, "Key": _queue_key(before, due)}},
        ]
        labels = ["delivery", "queue"]
        if after.next_attempt_ms is not None:
            queue: Item = {
                **_queue_key(after, after.next_attempt_ms),
                BODY: {"S": after.model_dump_json()},
            }
            items.append({"Put": {"TableName": name, "Item": queue}})
            labels.append("queue")
        transact(
            self._table,
            items,
            f"record delivery of {after.event.id} to {after.webhook_id}",
            labels,
            lambda _: ConcurrentModification(f"Delivery {after.key} changed concurrently."),
        )

    def deliveries(self, tenant: str, webhook_id: str, limit: int) -> list[Delivery]:
        out: list[Delivery] = []
        for item in self._table.query(
            f"list deliveries of {webhook_id}",
            key_condition="#pk = :pk",
            names={"#pk": PARTITION_KEY},
            values={":pk": {"S": f"{DELIVERY_PREFIX}{tenant}#{webhook_id}"}},
            forward=False,
            page_size=limit,
        ):
            out.append(Delivery.model_validate_json(it.text(item, BODY)))
            if len(out) >= limit:
                break
        return out
