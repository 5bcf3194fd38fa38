"""Index reads of the execution store: listing by function, due timers, active leases
(and the read of the running counter, which is no index but a small partition).

Global secondary indexes are eventually consistent on AWS (moto updates them at once):
a listing may miss an execution started a moment ago, and a sweep may see a timer a
moment late or early. The indexes only point at items; what they return is then read
from the table with consistent reads, so a stale index entry costs a wasted read, never
a wrong record or a fired timer whose execution already moved on without the engine
noticing (the engine re-checks every timer against the execution it loads).
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from treadle.adapters.aws import items as it
from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.domain.errors import InvalidParameter
from treadle.domain.models import Execution
from treadle.domain.ports import ExecutionQuery, Timer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

# Start keys are digits then "#<id>": these bound every one of them.
_LOWEST_START = "0"
_HIGHEST_START = it.HIGH


def list_executions(
    table: Table,
    tenant: str,
    function_name: str,
    query: ExecutionQuery,
    records: Callable[[list[str]], dict[str, Execution]],
) -> tuple[list[Execution], str | None]:
    """One page in start order; `records` reads the executions of ARNs (consistently)."""
    lo = _LOWEST_START if query.started_after_ms is None else f"{query.started_after_ms:015d}"
    hi = (
        _HIGHEST_START
        if query.started_before_ms is None
        else f"{query.started_before_ms:015d}#{it.HIGH}"
    )
    after = _decode_marker(query.marker) if query.marker else None
    if after is not None:
        # Inclusive bound at the marker; the marker's own item is skipped below.
        lo, hi = (lo, min(hi, after)) if query.reverse else (max(lo, after), hi)
    if lo > hi or query.limit <= 0:
        return [], None
    if query.statuses:
        index = t.GSI_BY_FUNCTION_STATUS
        partitions = [
            (t.STATUS_KEY, it.status_key(tenant, function_name, s.value))
            for s in sorted(query.statuses)
        ]
    else:
        index = t.GSI_BY_FUNCTION
        partitions = [(t.FUNCTION_KEY, it.function_key(tenant, function_name))]
    names = {"#s": t.START_KEY}
    values: dict[str, AttributeValueTypeDef] = {":lo": {"S": lo}, ":hi": {"S": hi}}
    filters = []
    if query.name:
        names["#n"] = t.EXECUTION_NAME
        values[":n"] = {"S": query.name}
        filters.append("#n = :n")
    if query.version:
        names["#v"] = t.FUNCTION_VERSION
        values[":v"] = {"S": query.version}
        filters.append("#v = :v")
    streams: list[Iterator[Item]] = []
    for attribute, partition in partitions:
        streams.append(
            table.query(
                f"list executions of {function_name}",
                index=index,
                key_condition="#p = :p AND #s BETWEEN :lo AND :hi",
                names={**names, "#p": attribute},
                values={**values, ":p": {"S": partition}},
                forward=not query.reverse,
                page_size=query.limit + 1,
                filter_expression=" AND ".join(filters) or None,
            )
        )
    # Each partition is in start order, so a k-way merge is the function's start order.
    merged = heapq.merge(
        *streams, key=lambda item: it.text(item, t.START_KEY), reverse=query.reverse
    )
    page = list(islice((i for i in merged if it.text(i, t.START_KEY) != after), query.limit + 1))
    marker = None
    if len(page) > query.limit:
        page = page[: query.limit]
        marker = _encode_marker(it.text(page[-1], t.START_KEY))
    arns = [it.arn_of_pk(it.text(item, t.PARTITION_KEY)) for item in page]
    found = records(arns)
    executions = [found[arn] for arn in arns if arn in found]
    if query.statuses:
        # An index entry may lag a status change; the record read is the truth.
        executions = [ex for ex in executions if ex.status in query.statuses]
    return executions, marker


def _encode_marker(start_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([start_key]).encode()).decode()


def _decode_marker(marker: str) -> str:
    try:
        (start_key,) = json.loads(base64.urlsafe_b64decode(marker.encode()))
    except (ValueError, TypeError):
        raise InvalidParameter(f"Invalid marker {marker!r}.") from None
    if not isinstance(start_key, str):
        raise InvalidParameter(f"Invalid marker {marker!r}.")
    return start_key


def _due_stream(table: Table, shard: int, now_ms: int, page_size: int) -> Iterator[Item]:
    return table.query(
        "read due timers",
        index=t.GSI_DUE_TIMERS,
        key_condition="#s = :s AND #d <= :now",
        names={"#s": t.DUE_SHARD, "#d": t.DUE_MS},
        values={":s": {"S": str(shard)}, ":now": {"N": str(now_ms)}},
        page_size=page_size,
    )


def due_timers(table: Table, now_ms: int, limit: int) -> list[Timer]:
    """The `limit` earliest timers due at `now_ms`, earliest first.

    An index entry is an execution (keyed by its earliest timer) or one timer set by
    another execution. The first `limit` entries hold the `limit` earliest timers: any
    timer of a later entry is due no earlier than every entry taken before it.
    """
    if limit <= 0:
        return []
    page_size = min(limit, 100)
    streams = [_due_stream(table, s, now_ms, page_size) for s in range(t.INDEX_SHARDS)]
    merged = heapq.merge(*streams, key=lambda item: it.number(item, t.DUE_MS))
    entries = list(islice(merged, limit))
    timers: list[Timer] = []
    metas: list[tuple[str, str]] = []
    for entry in entries:
        pk, sk = it.text(entry, t.PARTITION_KEY), it.text(entry, t.SORT_KEY)
        if sk == it.META_SK:
            metas.append((pk, sk))
        else:
            key = sk[len(it.TIMER_PREFIX) :]
            timers.append(it.timer_of(it.arn_of_pk(pk), key, it.number(entry, t.DUE_MS)))
    if metas:
        found = table.batch_get(
            metas,
            "read due timers",
            attributes=[it.TIMERS],
        )
        for (pk, _), item in found.items():
            arn = it.arn_of_pk(pk)
            timers.extend(
                it.timer_of(arn, key, due)
                for key, due in it.timers_of(item).items()
                if due <= now_ms
            )
    timers.sort(key=lambda timer: (timer.due_ms, timer.arn, timer.kind.value, timer.op_id))
    return timers[:limit]


def next_due_ms(table: Table) -> int | None:
    earliest = [
        it.number(first, t.DUE_MS)
        for s in range(t.INDEX_SHARDS)
        if (first := next(_due_stream(table, s, 2**62, 1), None)) is not None
    ]
    return min(earliest, default=None)


def active_invocations(table: Table) -> list[str]:
    arns: list[str] = []
    for s in range(t.INDEX_SHARDS):
        for item in table.query(
            "read active invocations",
            index=t.GSI_ACTIVE_INVOCATIONS,
            key_condition="#a = :a",
            names={"#a": t.ACTIVE_SHARD},
            values={":a": {"S": str(s)}},
        ):
            arns.append(it.arn_of_pk(it.text(item, t.PARTITION_KEY)))
    return sorted(arns)


def count_running(table: Table, tenant: str) -> int:
    """The sum of the tenant's running-counter shards (strongly consistent).

    One Query of the tenant's own partition: it holds only the shards, and reads whatever
    shards exist, so changing `RUNNING_SHARDS` needs no migration.
    """
    total = 0
    for item in table.query(
        f"count running executions of {tenant}",
        key_condition="#pk = :pk",
        names={"#pk": t.PARTITION_KEY},
        values={":pk": {"S": it.running_pk(tenant)}},
    ):
        total += it.number(item, it.RUNNING_COUNT)
    # Never negative, even if an operator edited a shard: a quota check adds to it.
    return max(total, 0)
