"""A tenant's function counters in the single table: `UF#<tenant>` / `<shard>`.

`functions`, `versions` (published) and `code_bytes` ($LATEST and every version), moved
by an `ADD` inside the very transaction that creates, changes, publishes or deletes:
a cancelled transaction moves nothing, and each write's own condition (absence,
revision, existence) is what keeps a retried or raced one from counting twice. Spread
over `SHARDS` items by function name so that two functions written at once do not
cancel each other's transactions (one item written twice at once is a
TransactionConflict); the figures are the sum, read by one Query of the partition.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.items import key
from treadle.domain.usage import FunctionCounts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

PREFIX: Final = "UF#"
SHARDS: Final = 4
FUNCTIONS: Final = "functions"
VERSIONS: Final = "versions"
CODE_BYTES: Final = "code_bytes"


def counts_update(
    table: str, tenant: str, function: str, *, functions: int = 0, versions: int = 0,
    code_bytes: int = 0,
) -> TransactWriteItemTypeDef | None:  # fmt: skip
    """The transaction item moving the counters; None when nothing moves."""
    deltas = {FUNCTIONS: functions, VERSIONS: versions, CODE_BYTES: code_bytes}
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return None
    shard = zlib.crc32(function.encode()) % SHARDS
    values: dict[str, AttributeValueTypeDef] = {f":{k}": {"N": str(v)} for k, v in deltas.items()}
    return {
        "Update": {
            "TableName": table,
            "Key": key(f"{PREFIX}{tenant}", str(shard)),
            "UpdateExpression": "ADD " + ", ".join(f"#{k} :{k}" for k in deltas),
            "ExpressionAttributeNames": {f"#{k}": k for k in deltas},
            "ExpressionAttributeValues": values,
        }
    }


def read_counts(table: Table, tenant: str) -> FunctionCounts:
    totals = {FUNCTIONS: 0, VERSIONS: 0, CODE_BYTES: 0}
    for item in table.query(
        f"read function counters of {tenant}",
        key_condition="#pk = :pk",
        names={"#pk": t.PARTITION_KEY},
        values={":pk": {"S": f"{PREFIX}{tenant}"}},
    ):
        for name in totals:
            if name in item:
                totals[name] += int(item[name]["N"])
    # Never negative, even if an operator edited an item.
    return FunctionCounts(*(max(0, totals[n]) for n in (FUNCTIONS, VERSIONS, CODE_BYTES)))
