"""DynamoDB adapter of the artifacts' `TokenStore`, in the single table (see `tables`).

Two items per token, written and removed in one transaction: `RT#<id>` / `TOKEN` (what
Git authentication reads, one GetItem) and `RTL#<tenant>#<repo>` / `<id>` (the
repository's listing, one Query). Both carry the whole record and a `ttl` an hour past
expiry: DynamoDB removes dead tokens itself; verification checks the expiry anyway,
since TTL deletes late.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import transact
from treadle.artifacts.ports import RepoToken, TokenNotFound
from treadle.domain.errors import AlreadyExists, ConcurrentModification, TreadleError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

TTL_GRACE_S = 3600
_FIELDS = ("tenant", "repo", "access", "secret_hash")


def token_pk(token_id: str) -> str:
    return f"{t.REPO_TOKEN_PREFIX}{token_id}"


def list_pk(tenant: str, repo: str) -> str:
    return f"{t.REPO_TOKEN_LIST_PREFIX}{tenant}#{repo}"


def _attributes(token: RepoToken) -> Item:
    return {
        "token_id": {"S": token.token_id},
        **{name: {"S": getattr(token, name)} for name in _FIELDS},
        "created_ms": {"N": str(token.created_ms)},
        "expires_ms": {"N": str(token.expires_ms)},
        t.TTL_ATTRIBUTE: {"N": str(token.expires_ms // 1000 + TTL_GRACE_S)},
    }


def _token(item: Item) -> RepoToken:
    return RepoToken(
        token_id=item["token_id"]["S"],
        tenant=item["tenant"]["S"],
        repo=item["repo"]["S"],
        access=item["access"]["S"],
        secret_hash=item["secret_hash"]["S"],
        created_ms=int(item["created_ms"]["N"]),
        expires_ms=int(item["expires_ms"]["N"]),
    )


class DynamoTokenStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._table = Table(client, table_name)
        self._name = table_name

    def put(self, token: RepoToken) -> None:
        attributes = _attributes(token)
        listing = key(list_pk(token.tenant, token.repo), token.token_id)
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {**key(token_pk(token.token_id), t.REPO_TOKEN_SK), **attributes},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {**listing, **attributes},
                }
            },
        ]

        def refused(_label: str) -> TreadleError:
            return AlreadyExists(f"Token '{token.token_id}' already exists.")

        transact(self._table, items, "store repository token", ["token", "listing"], refused)

    def get(self, token_id: str) -> RepoToken | None:
        item = self._table.get(key(token_pk(token_id), t.REPO_TOKEN_SK), "read repository token")
        return None if item is None else _token(item)

    def list(self, tenant: str, repo: str) -> list[RepoToken]:
        found = self._table.query(
            "list repository tokens",
            key_condition="pk = :pk",
            values={":pk": {"S": list_pk(tenant, repo)}},
        )
        return [_token(item) for item in found]

    def delete(self, tenant: str, repo: str, token_id: str) -> None:
        items: list[TransactWriteItemTypeDef] = [
            {
                "Delete": {
                    "TableName": self._name,
                    "Key": key(token_pk(token_id), t.REPO_TOKEN_SK),
                    # Only this tenant's token of this repository: another's looks absent.
                    "ConditionExpression": "#tenant = :tenant AND #repo = :repo",
                    "ExpressionAttributeNames": {"#tenant": "tenant", "#repo": "repo"},
                    "ExpressionAttributeValues": {":tenant": {"S": tenant}, ":repo": {"S": repo}},
                }
            },
            {
                "Delete": {
                    "TableName": self._name,
                    "Key": key(list_pk(tenant, repo), token_id),
                }
            },
        ]

        def refused(_label: str) -> TreadleError:
            return TokenNotFound(repo, token_id)

        transact(self._table, items, "revoke repository token", ["token", "listing"], refused)

    def delete_repo(self, tenant: str, repo: str) -> None:
        for token in self.list(tenant, repo):
            try:
                self.delete(tenant, repo, token.token_id)
            except (TokenNotFound, ConcurrentModification):
                log.info("token %s of %s/%s went meanwhile", token.token_id, tenant, repo)
