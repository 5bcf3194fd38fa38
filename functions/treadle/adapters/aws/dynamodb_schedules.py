"""DynamoDB adapter of the ScheduleStore port, in the single table (see `tables`).

| item | pk | sk | attributes |
|---|---|---|---|
| a schedule | `SC#<tenant>` | `<name>` | `body` (JSON), `version` (N) |

While unpaused it also carries `due_shard` (`S0`..`S3`) and `due_ms` (N).

One item per schedule: every change is one conditional write (PutItem conditioned on
the version read: compare-and-swap). Listing a tenant's schedules is a Query of its
partition. Schedulers find due schedules through the sparse `due-timers` index, whose
execution entries use the shards `0`..`3`: schedules use `S0`..`S3`, so neither reader
sees the other's entries and no new index is needed. The index is eventually
consistent: a due entry is read again by key before anyone acts on it.
"""

from __future__ import annotations

import base64
import heapq
import json
import zlib
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.errors import translated
from treadle.adapters.aws.items import key, number, text
from treadle.adapters.aws.optimistic import conditional
from treadle.domain.errors import AlreadyExists, ConcurrentModification, InvalidParameter, NotFound
from treadle.domain.schedules import Schedule

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

SCHEDULE_PREFIX: Final = "SC#"
SHARD_PREFIX: Final = "S"
_BODY: Final = "body"
_VERSION: Final = "version"


def schedule_pk(tenant: str) -> str:
    return f"{SCHEDULE_PREFIX}{tenant}"


def _shard(schedule: Schedule) -> str:
    digest = zlib.crc32(f"{schedule.tenant}#{schedule.name}".encode())
    return f"{SHARD_PREFIX}{digest % t.INDEX_SHARDS}"


def _item(schedule: Schedule) -> Item:
    item: Item = {
        **key(schedule_pk(schedule.tenant), schedule.name),
        _BODY: {"S": schedule.model_dump_json()},
        _VERSION: {"N": str(schedule.version)},
    }
    if schedule.due_ms is not None:
        item[t.DUE_SHARD] = {"S": _shard(schedule)}
        item[t.DUE_MS] = {"N": str(schedule.due_ms)}
    return item


def _schedule(item: Item) -> Schedule:
    return Schedule.model_validate_json(text(item, _BODY))


def _not_found(name: str) -> NotFound:
    return NotFound(f"Schedule {name} not found.")


class DynamoScheduleStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = Table(client, table_name)
        self._name = table_name

    def create(self, schedule: Schedule) -> None:
        stored = schedule.model_copy(update={"version": 1})
        refused = AlreadyExists(f"Schedule {schedule.name} already exists.")
        with conditional(f"create schedule {schedule.name}", refused):
            self._client.put_item(
                TableName=self._name,
                Item=_item(stored),
                ConditionExpression="attribute_not_exists(pk)",
            )

    def get(self, tenant: str, name: str) -> Schedule:
        item = self._table.get(key(schedule_pk(tenant), name), f"read schedule {name}")
        if item is None:
            raise _not_found(name)
        return _schedule(item)

    def list_page(
        self, tenant: str, limit: int, marker: str | None
    ) -> tuple[list[Schedule], str | None]:
        if limit < 1:
            raise InvalidParameter("limit must be at least 1.")
        condition = "pk = :pk"
        values: dict[str, AttributeValueTypeDef] = {":pk": {"S": schedule_pk(tenant)}}
        if marker:
            condition += " AND sk > :after"
            values[":after"] = {"S": _decode_marker(marker)}
        found = self._table.query(
            "list schedules", key_condition=condition, values=values, page_size=limit + 1
        )
        page = [_schedule(item) for item in islice(found, limit + 1)]
        more = len(page) > limit
        page = page[:limit]
        return page, (_encode_marker(page[-1].name) if more else None)

    def replace(self, schedule: Schedule) -> Schedule:
        stored = schedule.model_copy(update={"version": schedule.version + 1})
        with translated(f"update schedule {schedule.name}"):
            try:
                self._client.put_item(
                    TableName=self._name,
                    Item=_item(stored),
                    ConditionExpression="attribute_exists(pk) AND #v = :v",
                    ExpressionAttributeNames={"#v": _VERSION},
                    ExpressionAttributeValues={":v": {"N": str(schedule.version)}},
                )
            except self._client.exceptions.ConditionalCheckFailedException:
                # Gone, or changed since it was read: which one tells the caller what to do.
                self.get(schedule.tenant, schedule.name)
                raise ConcurrentModification(
                    f"Schedule {schedule.name} changed; read it again."
                ) from None
        return stored

    def delete(self, tenant: str, name: str) -> None:
        with conditional(f"delete schedule {name}", _not_found(name)):
            self._client.delete_item(
                TableName=self._name,
                Key=key(schedule_pk(tenant), name),
                ConditionExpression="attribute_exists(pk)",
            )

    def _due_stream(self, shard: int, now_ms: int, page_size: int) -> Iterator[Item]:
        return self._table.query(
            "read due schedules",
            index=t.GSI_DUE_TIMERS,
            key_condition="#s = :s AND #d <= :now",
            names={"#s": t.DUE_SHARD, "#d": t.DUE_MS},
            values={":s": {"S": f"{SHARD_PREFIX}{shard}"}, ":now": {"N": str(now_ms)}},
            page_size=page_size,
        )

    def due(self, now_ms: int, limit: int) -> list[Schedule]:
        if limit <= 0:
            return []
        page_size = min(limit, 100)
        streams = [self._due_stream(s, now_ms, page_size) for s in range(t.INDEX_SHARDS)]
        merged = heapq.merge(*streams, key=lambda item: number(item, t.DUE_MS))
        keys = [(text(e, t.PARTITION_KEY), text(e, t.SORT_KEY)) for e in islice(merged, limit)]
        if not keys:
            return []
        found = self._table.batch_get(keys, "read due schedules")
        # The index lags writes: only what the item itself says is due counts.
        out = [_schedule(found[k]) for k in keys if k in found]
        return [s for s in out if s.due_ms is not None and s.due_ms <= now_ms]

    def next_due_ms(self) -> int | None:
        earliest = [
            number(first, t.DUE_MS)
            for s in range(t.INDEX_SHARDS)
            if (first := next(self._due_stream(s, 2**62, 1), None)) is not None
        ]
        return min(earliest, default=None)


def _encode_marker(name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([name]).encode()).decode()


def _decode_marker(marker: str) -> str:
    try:
        (name,) = json.loads(base64.urlsafe_b64decode(marker.encode()))
    except (ValueError, TypeError):
        raise InvalidParameter(f"Invalid marker {marker!r}.") from None
    if not isinstance(name, str):
        raise InvalidParameter(f"Invalid marker {marker!r}.")
    return name
