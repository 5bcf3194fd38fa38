"""The tenant usage counters of the execution store in the single table (`tables`).

Executions by status and those holding an invocation now live on the tenant's
running-counter shards (`U#<tenant>` / `RUNNING#<shard>`), beside `running`, so a commit
that changes both moves them with ONE update of one item (a transaction may not touch an
item twice). Starts go to per-minute buckets (`UM#<tenant>` / `<minute:012d>#<shard>`),
sharded like the counter because every start of the tenant updates its minute's bucket,
and expiring by TTL a few minutes later.

A META item carries `usage_state` ("<STATUS>#<0|1>": what the counters count it as).
Every transaction that writes or deletes a META item moves the counters from that state
to the new one, so a commit replayed on an applied version, or cancelled, moves nothing;
an execution written before the counters existed has no state and is counted by its next
commit, never uncounted before.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import items as it
from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.domain.models import Execution
from treadle.domain.usage import ExecutionCounts, minute_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

USAGE_STATE: Final = "usage_state"
IN_FLIGHT: Final = "inflight"
STATUS_PREFIX: Final = "status_"
STARTS: Final = "starts"
MINUTES_PREFIX: Final = "UM#"
START_SHARDS: Final = 8
# Buckets are read for the current and the previous minute only.
BUCKET_TTL_S: Final = 600

State = tuple[str, bool]


def state_of(ex: Execution) -> State:
    return (ex.status.value, ex.invocation_active)


def encode(state: State) -> str:
    return f"{state[0]}#{int(state[1])}"


def state_in(meta: Mapping[str, AttributeValueTypeDef]) -> State | None:
    """What the counters count this META item as; None: not counted (written before)."""
    raw = meta.get(USAGE_STATE, {}).get("S")
    if raw is None:
        return None
    status, _, active = raw.partition("#")
    return (status, active == "1")


def counter_update(
    table: str,
    tenant: str,
    arn: str,
    *,
    running: int,
    before: State | None,
    after: State | None,
) -> TransactWriteItemTypeDef | None:
    """One update of the execution's shard moving `running` and the state counters;
    None when nothing moves (no condition: the META item's is the fence)."""
    deltas: dict[str, int] = {it.RUNNING_COUNT: running} if running else {}
    for state, sign in ((before, -1), (after, 1)):
        if state is not None:
            status_attr = STATUS_PREFIX + state[0]
            deltas[status_attr] = deltas.get(status_attr, 0) + sign
            deltas[IN_FLIGHT] = deltas.get(IN_FLIGHT, 0) + sign * int(state[1])
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return None
    # `running` is always present on a shard: `count_running` sums it on every item.
    deltas.setdefault(it.RUNNING_COUNT, 0)
    names = {f"#a{i}": name for i, name in enumerate(deltas)}
    values: dict[str, AttributeValueTypeDef] = {
        f":a{i}": {"N": str(v)} for i, v in enumerate(deltas.values())
    }
    return {
        "Update": {
            "TableName": table,
            "Key": it.running_key(tenant, arn),
            "UpdateExpression": "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(deltas))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def start_update(table: str, ex: Execution) -> TransactWriteItemTypeDef:
    minute = minute_of(ex.start_ms)
    shard = zlib.crc32(ex.arn.encode()) % START_SHARDS
    return {
        "Update": {
            "TableName": table,
            "Key": it.key(f"{MINUTES_PREFIX}{ex.tenant}", f"{minute:012d}#{shard}"),
            "UpdateExpression": "ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)",
            "ExpressionAttributeNames": {"#n": STARTS, "#ttl": t.TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":ttl": {"N": str(ex.start_ms // 1000 + BUCKET_TTL_S)},
            },
        }
    }


def read_counts(table: Table, tenant: str, now_ms: int) -> ExecutionCounts:
    """Two strongly consistent Queries of at most 8 and 16 items."""
    by_status: dict[str, int] = {}
    in_flight = 0
    for item in table.query(
        f"read usage of {tenant}",
        key_condition="#pk = :pk",
        names={"#pk": t.PARTITION_KEY},
        values={":pk": {"S": it.running_pk(tenant)}},
    ):
        for name, value in item.items():
            if name.startswith(STATUS_PREFIX):
                status = name[len(STATUS_PREFIX) :]
                by_status[status] = by_status.get(status, 0) + int(value["N"])
        if IN_FLIGHT in item:
            in_flight += it.number(item, IN_FLIGHT)
    minute = minute_of(now_ms)
    starts: dict[int, int] = {}
    for item in table.query(
        f"read starts of {tenant}",
        key_condition="#pk = :pk AND #sk BETWEEN :lo AND :hi",
        names={"#pk": t.PARTITION_KEY, "#sk": t.SORT_KEY},
        values={
            ":pk": {"S": f"{MINUTES_PREFIX}{tenant}"},
            ":lo": {"S": f"{minute - 1:012d}#"},
            ":hi": {"S": f"{minute:012d}#{it.HIGH}"},
        },
    ):
        bucket = int(it.text(item, t.SORT_KEY).partition("#")[0])
        starts[bucket] = starts.get(bucket, 0) + it.number(item, STARTS)
    return ExecutionCounts(by_status, in_flight, starts)
