"""The start queue on DynamoDB (issue 14, point 5): the StartQueue port over the
executions table (key schema in `tables`).

A QUEUED execution has, besides its META item, one queue entry `Q#<tenant>` /
`<start key>` (start time, then execution id: FIFO per tenant is one Query of one
partition in key order), and counts on one of its tenant's backlog items `QB` /
`<tenant>#<shard>` (`queued`, a number): the few rows the promoter reads to find the
tenants with a backlog, never a scan of executions.

Both move in the TransactWriteItems of the commit that moves the execution into or out
of QUEUED (its creation, its promotion, a stop, a delete; `commits.py`), decided from the
META item's `usage_state` like the usage counters (`usage_items`): a cancelled or
replayed commit moves nothing, so the entries are exactly the QUEUED executions and
the counts their number. The shard is the execution's running-counter shard: the
transactions that would collide on one backlog item already collide on that counter
shard, so the queue adds no TransactionConflict of its own.

A drained backlog item (0) is deleted by the reader that sees it, on the condition that
it is still 0: an enqueue landing first keeps it, one landing after recreates it (ADD
on a missing item), so the count stays exact while the `QB` partition holds only
tenants with a backlog and those that just drained.

Every queue transition of every tenant writes the one `QB` partition: DynamoDB splits a
hot partition by sort key (each tenant's shards are distinct keys), and only the
promoter reads it; a start's maxQueued check reads the tenant's own usage counters.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import items as it
from treadle.adapters.aws import tables as t
from treadle.adapters.aws import usage_items as us
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.optimistic import conditional
from treadle.adapters.aws.usage_items import State
from treadle.domain.models import Execution, ExecutionStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

QUEUE_PREFIX: Final = "Q#"
BACKLOG_PK: Final = "QB"
QUEUED: Final = "queued"
_STATUS: Final = ExecutionStatus.QUEUED.value


def queue_pk(tenant: str) -> str:
    return f"{QUEUE_PREFIX}{tenant}"


def backlog_key(tenant: str, arn: str) -> Item:
    shard = zlib.crc32(arn.encode()) % t.RUNNING_SHARDS  # as `items.running_key`
    return it.key(BACKLOG_PK, f"{tenant}#{shard}")


def _queued(state: State | None) -> bool:
    return state is not None and state[0] == _STATUS


def queue_writes(
    table: str, ex: Execution, *, before: State | None, after: State | None
) -> list[TransactWriteItemTypeDef]:
    """The entry's put or delete and the backlog count's move, when the execution enters
    or leaves QUEUED (`before`/`after`: its usage states); nothing otherwise.

    No conditions: the META item's is the fence of the transaction."""
    delta = int(_queued(after)) - int(_queued(before))
    if not delta:
        return []
    entry = it.key(queue_pk(ex.tenant), it.start_key(ex.start_ms, ex.exec_id))
    write: TransactWriteItemTypeDef
    if delta > 0:
        item: Item = {**entry, **it.common(ex), it.ARN: {"S": ex.arn}}
        write = {"Put": {"TableName": table, "Item": item}}
    else:
        write = {"Delete": {"TableName": table, "Key": entry}}
    count: TransactWriteItemTypeDef = {
        "Update": {
            "TableName": table,
            "Key": backlog_key(ex.tenant, ex.arn),
            "UpdateExpression": "ADD #q :d",
            "ExpressionAttributeNames": {"#q": QUEUED},
            "ExpressionAttributeValues": {":d": {"N": str(delta)}},
        }
    }
    return [write, count]


class DynamoStartQueue:
    """Reads of the start queue; its writes ride on the execution store's commits."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._table = Table(client, table_name)

    def tenants_with_queued(self) -> list[str]:
        """One strongly consistent Query of the backlog items (a few per tenant with a
        backlog); the drained ones are deleted on the way (see the module's docstring)."""
        totals: dict[str, int] = {}
        drained: list[Item] = []
        for item in self._table.query(
            "list tenants with queued starts",
            key_condition="#pk = :pk",
            names={"#pk": t.PARTITION_KEY},
            values={":pk": {"S": BACKLOG_PK}},
        ):
            tenant = it.text(item, t.SORT_KEY).rpartition("#")[0]
            n = it.number(item, QUEUED) if QUEUED in item else 0
            totals[tenant] = totals.get(tenant, 0) + n
            if n <= 0:
                drained.append(it.key(BACKLOG_PK, it.text(item, t.SORT_KEY)))
        for key in drained:
            self._forget(key)
        return sorted(tenant for tenant, n in totals.items() if n > 0)

    def _forget(self, key: Item) -> None:
        # An enqueue that landed since the read makes the condition fail: the item stays.
        with conditional("forget a drained backlog", None):
            self._table.client.delete_item(
                TableName=self._table.name,
                Key=key,
                ConditionExpression="attribute_not_exists(#q) OR #q <= :zero",
                ExpressionAttributeNames={"#q": QUEUED},
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )

    def count_queued(self, tenant: str) -> int:
        """The tenant's `QUEUED` usage counter (`usage_items`): one Query of its own
        counter shards, moved by the same transactions as the backlog items. Every
        start asks (its maxQueued check), so it reads the tenant's partition rather
        than the shared `QB` one."""
        attribute = us.STATUS_PREFIX + _STATUS
        total = 0
        for item in self._table.query(
            f"count queued starts of {tenant}",
            key_condition="#pk = :pk",
            names={"#pk": t.PARTITION_KEY, "#q": attribute},
            values={":pk": {"S": it.running_pk(tenant)}},
            projection="#q",
        ):
            total += it.number(item, attribute) if attribute in item else 0
        return max(0, total)

    def oldest_queued(self, tenant: str, limit: int) -> list[str]:
        if limit <= 0:
            return []
        arns: list[str] = []
        for item in self._table.query(
            f"read the start queue of {tenant}",
            key_condition="#pk = :pk",
            names={"#pk": t.PARTITION_KEY},
            values={":pk": {"S": queue_pk(tenant)}},
            page_size=limit,
        ):
            arns.append(it.text(item, it.ARN))
            if len(arns) >= limit:
                break
        return arns
