"""DynamoDB adapter of the LastUsedStore port: `LU#<tenant>#<kind>` / `<resource>`.

`touch` is one UpdateItem conditioned on the stored time being older than the grain, so
many Lambdas using one resource at once write it at most once a minute between them; a
failed condition is the common, cheap case (a write unit, no retry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import conditional
from treadle.domain.errors import PreconditionFailed
from treadle.domain.usage import LAST_USED_GRAIN_MS

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PREFIX: Final = "LU#"
AT: Final = "at_ms"


def _pk(tenant: str, kind: str) -> str:
    return f"{PREFIX}{tenant}#{kind}"


class DynamoLastUsed:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = Table(client, table_name)
        self._name = table_name

    def touch(self, tenant: str, kind: str, resource: str, now_ms: int) -> bool:
        stale = PreconditionFailed("recent enough")
        try:
            with conditional(f"record use of {kind} {resource}", stale):
                self._client.update_item(
                    TableName=self._name,
                    Key=key(_pk(tenant, kind), resource),
                    UpdateExpression="SET #at = :now",
                    ConditionExpression="attribute_not_exists(#at) OR #at < :cutoff",
                    ExpressionAttributeNames={"#at": AT},
                    ExpressionAttributeValues={
                        ":now": {"N": str(now_ms)},
                        ":cutoff": {"N": str(now_ms - LAST_USED_GRAIN_MS)},
                    },
                )
        except PreconditionFailed:
            return False
        return True

    def last_used(self, tenant: str, kind: str) -> dict[str, int]:
        found = self._table.query(
            f"read last uses of {tenant}",
            key_condition="#pk = :pk",
            names={"#pk": t.PARTITION_KEY},
            values={":pk": {"S": _pk(tenant, kind)}},
        )
        return {item[t.SORT_KEY]["S"]: int(item[AT]["N"]) for item in found}

    def forget(self, tenant: str, kind: str, resource: str) -> None:
        with conditional(f"forget use of {kind} {resource}", None):
            self._client.delete_item(TableName=self._name, Key=key(_pk(tenant, kind), resource))
