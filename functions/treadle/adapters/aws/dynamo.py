"""The few DynamoDB calls the execution store makes, with paging and translation.

Every call goes through `translated`, so a ClientError never leaves this module except as
a domain error. Batch calls retry their unprocessed remainder with backoff: DynamoDB
returns one when throttled instead of failing the call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from treadle.adapters.aws.errors import translated
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import backoff
from treadle.adapters.aws.tables import PARTITION_KEY, SORT_KEY
from treadle.domain.errors import Throttled, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        KeysAndAttributesTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
_UNPROCESSED_ATTEMPTS = 8
# A transaction whose answer was lost is sent again with its token this many times.
_AMBIGUOUS_ATTEMPTS = 4


class Table:
    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, item_key: Mapping[str, AttributeValueTypeDef], action: str) -> Item | None:
        with translated(action):
            response = self.client.get_item(TableName=self.name, Key=item_key, ConsistentRead=True)
        return response.get("Item")

    def query(
        self,
        action: str,
        *,
        key_condition: str,
        values: Mapping[str, AttributeValueTypeDef],
        names: Mapping[str, str] | None = None,
        index: str | None = None,
        forward: bool = True,
        page_size: int | None = None,
        filter_expression: str | None = None,
        projection: str | None = None,
    ) -> Iterator[Item]:
        """Items in key order, fetched page by page as the caller consumes them."""
        request: QueryInputTypeDef = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": forward,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if index is None:
            request["ConsistentRead"] = True  # indexes are eventually consistent anyway
        else:
            request["IndexName"] = index
        if page_size is not None:
            request["Limit"] = page_size
        if filter_expression is not None:
            request["FilterExpression"] = filter_expression
        if projection is not None:
            request["ProjectionExpression"] = projection
        while True:
            with translated(action):
                page = self.client.query(**request)
            yield from page["Items"]
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def batch_get(
        self,
        keys: Sequence[tuple[str, str]],
        action: str,
        attributes: Sequence[str] | None = None,
    ) -> dict[tuple[str, str], Item]:
        """Consistent reads of many items, by (pk, sk); absent items are left out."""
        found: dict[tuple[str, str], Item] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_GET_MAX):
            pending: list[Any] = [key(pk, sk) for pk, sk in unique[start : start + BATCH_GET_MAX]]
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                request: KeysAndAttributesTypeDef = {"Keys": pending, "ConsistentRead": True}
                if attributes is not None:
                    wanted = [PARTITION_KEY, SORT_KEY, *attributes]
                    request["ProjectionExpression"] = ", ".join(
                        f"#a{i}" for i in range(len(wanted))
                    )
                    request["ExpressionAttributeNames"] = {
                        f"#a{i}": a for i, a in enumerate(wanted)
                    }
                with translated(action):
                    response = self.client.batch_get_item(RequestItems={self.name: request})
                for item in response["Responses"].get(self.name, []):
                    found[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = item
                unprocessed = response.get("UnprocessedKeys", {}).get(self.name)
                pending = list(unprocessed["Keys"]) if unprocessed else []
                if not pending:
                    break
                backoff(attempt, base_s=0.05, cap_s=1.0, jitter=False)
            else:
                raise Throttled(f"{action}: DynamoDB kept {len(pending)} reads unprocessed.")
        return found

    def batch_delete(self, keys: Sequence[tuple[str, str]], action: str) -> None:
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_WRITE_MAX):
            chunk = unique[start : start + BATCH_WRITE_MAX]
            self._batch_write([{"DeleteRequest": {"Key": key(pk, sk)}} for pk, sk in chunk], action)

    def batch_put(self, items: Sequence[Item], action: str) -> None:
        for start in range(0, len(items), BATCH_WRITE_MAX):
            chunk = items[start : start + BATCH_WRITE_MAX]
            self._batch_write([{"PutRequest": {"Item": item}} for item in chunk], action)

    def _batch_write(self, requests: list[WriteRequestTypeDef], action: str) -> None:
        pending: list[Any] = list(requests)
        for attempt in range(_UNPROCESSED_ATTEMPTS):
            with translated(action):
                response = self.client.batch_write_item(RequestItems={self.name: pending})
            pending = list(response.get("UnprocessedItems", {}).get(self.name, []))
            if not pending:
                return
            backoff(attempt, base_s=0.05, cap_s=1.0, jitter=False)
        raise Throttled(f"{action}: DynamoDB kept {len(pending)} writes unprocessed.")

    def transact(self, items: list[TransactWriteItemTypeDef], token: str | None = None) -> None:
        """One TransactWriteItems; the caller translates its errors (it knows the items).

        The token (a fresh one unless given) makes botocore's own retries of this call
        idempotent: a retry after a lost response reports success instead of a failed
        condition on our own write.
        """
        token = token or uuid.uuid4().hex
        failure: HTTPClientError | BotoConnectionError | None = None
        for attempt in range(_AMBIGUOUS_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=items, ClientRequestToken=token)
                return
            except (HTTPClientError, BotoConnectionError) as exc:
                # Timed out or cut off past botocore's own retries: applied or not, we
                # cannot tell. Sent again with the same token, DynamoDB answers what the
                # first one did (for 10 minutes) instead of applying it twice or failing
                # a condition on our own write; a caller's retry would use a new token.
                log.warning("transaction's answer lost (try %d): %s", attempt + 1, exc)
                failure = exc
                backoff(attempt, base_s=0.05, cap_s=1.0)
        raise Unavailable(
            f"write to {self.name}: DynamoDB is unreachable ({failure})."
        ) from failure
