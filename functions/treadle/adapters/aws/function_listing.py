"""Listing functions and their versions from the single table (`function_items`): the
tenant's listing partition for names, each function's partition for its versions."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.function_items import (
    LATEST,
    VERSIONS_END,
    body_of,
    function_pk,
    listing_pk,
    not_found,
    version_sk,
)
from treadle.adapters.aws.optimistic import DELETING
from treadle.domain.errors import InvalidParameter
from treadle.domain.ports import FunctionVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


def list_latest(
    table: Table, tenant: str, marker: str | None, limit: int
) -> tuple[list[FunctionVersion], str | None]:
    limit = max(1, limit)
    values: dict[str, AttributeValueTypeDef] = {":pk": {"S": listing_pk(tenant)}}
    condition = "pk = :pk"
    if marker:  # an empty sort key value is invalid in a key condition
        condition += " AND sk > :marker"
        values[":marker"] = {"S": marker}
    found = table.query(
        "list functions", key_condition=condition, values=values, page_size=limit + 1
    )
    names = [item[t.SORT_KEY]["S"] for item in islice(found, limit + 1)]
    more = len(names) > limit
    names = names[:limit]
    latest = table.batch_get(
        [(function_pk(tenant, n), t.FUNCTION_LATEST_SK) for n in names], "get functions"
    )
    items = [latest.get((function_pk(tenant, n), t.FUNCTION_LATEST_SK)) for n in names]
    # Listing entries leave with the fence of a delete: a miss is a race with one.
    functions = [body_of(i) for i in items if i is not None and DELETING not in i]
    return functions, (names[-1] if more else None)


def list_versions(
    table: Table, tenant: str, name: str, marker: str | None, limit: int
) -> tuple[list[FunctionVersion], str | None]:
    limit = max(1, limit)
    try:
        after = int(marker) if marker else -1
    except ValueError:
        raise InvalidParameter(f"Invalid marker {marker!r}.") from None
    # The versions' own range of the partition (aliases sort before it).
    low = t.FUNCTION_VERSION_SK_PREFIX
    if after >= 0:  # the marker is the last number returned; $LATEST counts as 0
        low = t.FUNCTION_LATEST_SK if after == 0 else version_sk(after)
    values: dict[str, AttributeValueTypeDef] = {
        ":pk": {"S": function_pk(tenant, name)},
        ":low": {"S": low},
        ":high": {"S": VERSIONS_END},
    }
    found = table.query(
        "list function versions",
        key_condition="pk = :pk AND sk BETWEEN :low AND :high",
        values=values,
        page_size=limit + 2,
    )
    # BETWEEN includes the marker's own item, which the previous page returned.
    rows = list(islice((r for r in found if after < 0 or r[t.SORT_KEY]["S"] != low), limit + 1))
    if after < 0 and (not rows or DELETING in rows[0]):
        raise not_found(name)
    more = len(rows) > limit
    rows = rows[:limit]
    versions = [body_of(r) for r in rows]
    if not more:
        return versions, None
    # The marker is what SQLite pages on: the version number, 0 for $LATEST.
    last = versions[-1].version
    return versions, "0" if last == LATEST else last
