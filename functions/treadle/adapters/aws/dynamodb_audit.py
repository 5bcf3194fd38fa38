"""DynamoDB side of the audit log, in the single table.

A record is two items written in the change's own TransactWriteItems (`audit_writes`):

| item | pk | sk |
|---|---|---|
| a tenant's record | `AU#<tenant>` | `<record id>` |
| every tenant's records of one UTC day | `AUD#<yyyymmdd>` | `<record id>` |

A record id starts with its time in ms (13 digits), so sort-key order is time order
and since/until are key ranges. The tenant partition serves `GET /v1/audit`; the day
partitions serve the admin's listing across tenants, read newest day first. Both carry
`ttl` (record time + retention): TTL is the retention, and a reader also hides what
TTL has not removed yet (it runs within days, not on the second).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import conditional, transact
from treadle.domain.audit import (
    DAY_MS,
    DEFAULT_RETENTION_DAYS,
    AuditPage,
    AuditQuery,
    AuditRecord,
)
from treadle.domain.errors import TreadleError, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

AUDIT_PREFIX: Final = "AU#"
AUDIT_DAY_PREFIX: Final = "AUD#"
BODY: Final = "body"
# Past every id of its millisecond ("-" then random characters sort below "~").
_END: Final = "~"


def _day(time_ms: int) -> str:
    return dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.UTC).strftime("%Y%m%d")


def audit_writes(
    table_name: str, record: AuditRecord | None, retention_days: int = DEFAULT_RETENTION_DAYS
) -> list[TransactWriteItemTypeDef]:
    """The puts that join a change's transaction (none without a record)."""
    if record is None:
        return []
    expires = record.time_ms // 1000 + retention_days * 86_400
    common: Item = {BODY: {"S": record.model_dump_json()}, t.TTL_ATTRIBUTE: {"N": str(expires)}}
    return [
        {
            "Put": {
                "TableName": table_name,
                "Item": {**key(f"{AUDIT_PREFIX}{record.tenant}", record.id), **common},
            }
        },
        {
            "Put": {
                "TableName": table_name,
                "Item": {**key(f"{AUDIT_DAY_PREFIX}{_day(record.time_ms)}", record.id), **common},
            }
        },
    ]


def audited_update(
    table: Table,
    update: UpdateTypeDef,
    audit: list[TransactWriteItemTypeDef],
    action: str,
    refused: TreadleError,
) -> None:
    """One conditional update (`refused` if its condition fails); with audit items, the
    same update in one transaction with them, so the record lands with the change."""
    if not audit:
        with conditional(action, refused):
            table.client.update_item(**update)
        return
    transact(table, [{"Update": update}, *audit], action, ["update"], lambda _label: refused)


class DynamoAuditLog:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        now_ms: Callable[[], int],
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._table = Table(client, table_name)
        self._name = table_name
        self._now_ms = now_ms
        self._retention_days = retention_days

    def append(self, record: AuditRecord) -> None:
        items = audit_writes(self._name, record, self._retention_days)
        transact(self._table, items, "append audit record", ["tenant", "day"], _never)

    def _partition(self, pk: str, low: str, high: str) -> Iterator[AuditRecord]:
        found = self._table.query(
            "list audit records",
            key_condition="pk = :pk AND sk BETWEEN :low AND :high",
            values={":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
            forward=False,
            page_size=200,
        )
        for item in found:
            yield AuditRecord.model_validate_json(item[BODY]["S"])

    def query(self, query: AuditQuery) -> AuditPage:
        now = self._now_ms()
        floor = now - self._retention_days * DAY_MS
        since = max(query.since_ms or 0, floor)
        until = query.until_ms if query.until_ms is not None else now + DAY_MS
        low = f"{since:013d}"
        high = f"{until - 1:013d}{_END}"
        if query.before_id is not None:
            high = min(high, query.before_id)
        if query.tenant is not None:
            candidates = self._partition(f"{AUDIT_PREFIX}{query.tenant}", low, high)
        else:
            candidates = self._days(since, until, low, high)
        records: list[AuditRecord] = []
        for record in candidates:
            if record.time_ms >= since and query.matches(record):
                records.append(record)
                if len(records) > query.limit:
                    break
        more = len(records) > query.limit
        records = records[: query.limit]
        return AuditPage(records=records, next_cursor=records[-1].id if more else None)

    def _days(self, since: int, until: int, low: str, high: str) -> Iterator[AuditRecord]:
        day = min(until, self._now_ms() + DAY_MS)
        while day >= since - DAY_MS:
            yield from self._partition(f"{AUDIT_DAY_PREFIX}{_day(day)}", low, high)
            day -= DAY_MS

    def purge(self, before_ms: int) -> int:
        """Nothing to do: the items' TTL is the retention, and reads hide the rest."""
        return 0


def _never(label: str) -> Unavailable:  # puts without conditions cannot be refused
    return Unavailable(f"audit append refused ({label})")
