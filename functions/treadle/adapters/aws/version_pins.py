"""Pin counters: how many executions that are not closed each function version holds.

Garbage collection must never delete a version (or a function) that a live execution is
pinned to. A DynamoDB transaction cannot query, so the count is kept where a condition
can read it: items `VP#<tenant>#<function>` / `<shard>` with one number per version
(`v:<version>`) and one for the whole function (`all`). The commits that create, close
or delete an execution move them in their own TransactWriteItems (`commits.py`), decided
from the META item's `usage_state` like the usage counters (`usage_items`), so a
cancelled or replayed commit moves nothing. A version delete carries one ConditionCheck
per shard (`v:<version>` absent or 0): a commit that pins it and the delete cannot both
apply, whichever comes first. Shards spread the starts of one hot version over
`PIN_SHARDS` items, as the start buckets do; an execution stays on its shard (by ARN).

An execution written before the counters existed is counted by its next commit, like
the usage counters; until then GC may not see its pin (documented in operating.md).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import items as it
from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.usage_items import State
from treadle.domain.models import TERMINAL_EXECUTION_STATUSES, Execution

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

PINS_PREFIX: Final = "VP#"
PIN_SHARDS: Final = 8
ALL: Final = "all"
VERSION_PREFIX: Final = "v:"
_CLOSED: Final = frozenset(s.value for s in TERMINAL_EXECUTION_STATUSES)


def pins_pk(tenant: str, function_name: str) -> str:
    return f"{PINS_PREFIX}{tenant}#{function_name}"


def _live(state: State | None) -> bool:
    return state is not None and state[0] not in _CLOSED


def pin_update(
    table: str, ex: Execution, *, before: State | None, after: State | None
) -> TransactWriteItemTypeDef | None:
    """The update of the execution's pin shard when it starts or stops being live."""
    delta = int(_live(after)) - int(_live(before))
    if not delta:
        return None
    shard = zlib.crc32(ex.arn.encode()) % PIN_SHARDS
    return {
        "Update": {
            "TableName": table,
            "Key": it.key(pins_pk(ex.tenant, ex.function_name), f"{shard}"),
            "UpdateExpression": "ADD #v :d, #all :d",
            "ExpressionAttributeNames": {"#v": VERSION_PREFIX + ex.version, "#all": ALL},
            "ExpressionAttributeValues": {":d": {"N": str(delta)}},
        }
    }


def unpinned_checks(
    table: str, tenant: str, function_name: str, version: str | None
) -> list[TransactWriteItemTypeDef]:
    """One ConditionCheck per shard: nothing live is pinned to the version (None: to any
    version of the function). A missing shard item passes."""
    attribute = ALL if version is None else VERSION_PREFIX + version
    zero: AttributeValueTypeDef = {"N": "0"}
    return [
        {
            "ConditionCheck": {
                "TableName": table,
                "Key": it.key(pins_pk(tenant, function_name), f"{shard}"),
                "ConditionExpression": "attribute_not_exists(#p) OR #p <= :zero",
                "ExpressionAttributeNames": {"#p": attribute},
                "ExpressionAttributeValues": {":zero": zero},
            }
        }
        for shard in range(PIN_SHARDS)
    ]


def read_pins(table: Table, tenant: str, function_name: str) -> dict[str, int]:
    """Version -> live executions pinned to it (one strongly consistent Query)."""
    pins: dict[str, int] = {}
    for item in table.query(
        f"read pins of {function_name}",
        key_condition="#pk = :pk",
        names={"#pk": t.PARTITION_KEY},
        values={":pk": {"S": pins_pk(tenant, function_name)}},
    ):
        for name, value in item.items():
            if name.startswith(VERSION_PREFIX):
                version = name[len(VERSION_PREFIX) :]
                pins[version] = pins.get(version, 0) + int(value["N"])
    return {v: n for v, n in pins.items() if n > 0}
