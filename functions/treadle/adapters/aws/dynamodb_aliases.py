"""Aliases of the DynamoDB `FunctionStore` (the `AliasStore` port), in the function's partition.

An alias is the item `F#<tenant>#<name>` / `A#<alias>` (`body`: the Alias as JSON,
`revision_id`, `function_version`). In the function's partition it is one of the
children that deleting the function removes (`FencedRecord`), and the invariants with
versions are conditions of one transaction:

- every alias write (create, update, delete) also bumps `alias_seq` on $LATEST, on
  condition that the function is live; so an alias is never written into a function
  being deleted, and a reader of `alias_seq` notices any alias change since;
- creating or repointing an alias checks, in the same transaction, that its version
  item exists;
- deleting a version lists the aliases, refuses if one names it, and deletes on
  condition that `alias_seq` has not moved since (else re-reads): no alias is left
  naming a deleted version, whatever the interleaving.

'#' < '$' < 'V': `A#...` items sort before the versions; readers of either kind query
their own sort-key range (`ALIAS_SK_PREFIX` to `ALIAS_SK_END`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.errors import transaction_error
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import ATTEMPTS, DELETING, LIVE, backoff, lost_race
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    NotFound,
    PreconditionFailed,
    TreadleError,
)
from treadle.domain.ports import Alias

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

LATEST: Final = "$LATEST"
ALIAS_SEQ: Final = "alias_seq"
ALIAS_SK_PREFIX: Final = "A#"
ALIAS_SK_END: Final = "A$"  # just after every `A#...`
REVISION_MOVED: Final = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def alias_sk(name: str) -> str:
    return f"{ALIAS_SK_PREFIX}{name}"


def version_key_sk(version: str) -> str:
    """The sort key of a version item ("$LATEST" or a canonical number)."""
    if version == LATEST:
        return t.FUNCTION_LATEST_SK
    return f"{t.FUNCTION_VERSION_SK_PREFIX}{int(version):012d}"


def _alias_not_found(function_name: str, name: str) -> NotFound:
    return NotFound(f"Alias not found: {function_name}:{name}")


def _version_not_found(function_name: str, version: str) -> NotFound:
    suffix = "" if version == LATEST else f":{version}"
    return NotFound(f"Function not found: {function_name}{suffix}")


class DynamoAliases:
    """The AliasStore half of `DynamoFunctionStore` (which delegates to it)."""

    def __init__(self, table: Table, function_pk: str) -> None:
        self._table = table
        self._pk = function_pk

    # -- writes --------------------------------------------------------------------

    def _bump(self) -> TransactWriteItemTypeDef:
        """$LATEST's `alias_seq` + 1, on condition that the function is live."""
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": key(self._pk, t.FUNCTION_LATEST_SK),
                "UpdateExpression": "SET #aseq = if_not_exists(#aseq, :zero) + :one",
                "ConditionExpression": LIVE,
                "ExpressionAttributeNames": {"#aseq": ALIAS_SEQ, "#deleting": DELETING},
                "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}},
            }
        }

    def _version_exists(self, version: str) -> TransactWriteItemTypeDef:
        return {
            "ConditionCheck": {
                "TableName": self._table.name,
                "Key": key(self._pk, version_key_sk(version)),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def _put(self, alias: Alias, condition: str, values: Item) -> TransactWriteItemTypeDef:
        put: TransactWriteItemTypeDef = {
            "Put": {
                "TableName": self._table.name,
                "Item": {
                    **key(self._pk, alias_sk(alias.name)),
                    "body": {"S": alias.model_dump_json()},
                    "revision_id": {"S": alias.revision_id},
                    "function_version": {"S": alias.function_version},
                },
                "ConditionExpression": condition,
            }
        }
        if values:
            put["Put"]["ExpressionAttributeValues"] = values
        return put

    def _transact(
        self, items: list[TransactWriteItemTypeDef], action: str, refused: dict[str, TreadleError]
    ) -> None:
        labels = list(refused)
        try:
            self._table.transact(items)
        except ClientError as exc:
            raise transaction_error(exc, action, labels, lambda label: refused[label]) from exc

    def create(self, alias: Alias) -> None:
        items = [self._bump()]
        refused: dict[str, TreadleError] = {
            "function": _version_not_found(alias.function_name, LATEST)
        }
        if alias.function_version != LATEST:
            items.append(self._version_exists(alias.function_version))
            refused["version"] = _version_not_found(alias.function_name, alias.function_version)
        items.append(self._put(alias, "attribute_not_exists(pk)", {}))
        refused["alias"] = AlreadyExists(f"Alias already exists: {alias.alias_arn}")
        self._transact(items, f"create alias {alias.name}", refused)

    def update(self, alias: Alias, expected_revision: str) -> None:
        items = [self._bump()]
        refused: dict[str, TreadleError] = {
            "function": _alias_not_found(alias.function_name, alias.name)
        }
        if alias.function_version != LATEST:
            items.append(self._version_exists(alias.function_version))
            refused["version"] = _version_not_found(alias.function_name, alias.function_version)
        items.append(
            self._put(alias, "revision_id = :expected", {":expected": {"S": expected_revision}})
        )
        # A refused alias is either gone or changed: the re-read tells which.
        refused["alias"] = PreconditionFailed(REVISION_MOVED)
        try:
            self._transact(items, f"update alias {alias.name}", refused)
        except PreconditionFailed:
            if self.get(alias.function_name, alias.name) is None:
                raise _alias_not_found(alias.function_name, alias.name) from None
            raise

    def delete(self, function_name: str, name: str) -> None:
        missing = _alias_not_found(function_name, name)
        items: list[TransactWriteItemTypeDef] = [
            self._bump(),
            {
                "Delete": {
                    "TableName": self._table.name,
                    "Key": key(self._pk, alias_sk(name)),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
        self._transact(items, f"delete alias {name}", {"function": missing, "alias": missing})

    def delete_version(
        self,
        function_name: str,
        version_sk: str,
        version: str,
        extra: Sequence[TransactWriteItemTypeDef] = (),
    ) -> None:
        """Delete one published version unless an alias names it (see the docstring);
        `extra` items go in the same transaction (the tenant's counters)."""
        for attempt in range(ATTEMPTS):
            latest = self._table.get(key(self._pk, t.FUNCTION_LATEST_SK), "get function")
            if latest is None or DELETING in latest:
                raise _version_not_found(function_name, version)
            naming = [a.name for a in self.all() if a.function_version == version]
            if naming:
                raise Conflict(
                    "Unable to delete version because the following aliases reference it: "
                    f"[{', '.join(naming)}]"
                )
            seq = latest.get(ALIAS_SEQ)
            unchanged = "attribute_not_exists(#aseq)" if seq is None else "#aseq = :seq"
            check: TransactWriteItemTypeDef = {
                "ConditionCheck": {
                    "TableName": self._table.name,
                    "Key": key(self._pk, t.FUNCTION_LATEST_SK),
                    "ConditionExpression": f"{LIVE} AND {unchanged}",
                    "ExpressionAttributeNames": {"#aseq": ALIAS_SEQ, "#deleting": DELETING},
                }
            }
            if seq is not None:
                check["ConditionCheck"]["ExpressionAttributeValues"] = {":seq": seq}
            delete: TransactWriteItemTypeDef = {
                "Delete": {
                    "TableName": self._table.name,
                    "Key": key(self._pk, version_sk),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            }
            try:
                self._table.transact([check, delete, *extra])
                return
            except ClientError as exc:
                error = transaction_error(
                    exc,
                    f"delete {function_name}:{version}",
                    ["function", "version"],
                    lambda label: _version_not_found(function_name, version),
                )
                if not lost_race(exc) or (isinstance(error, NotFound) and _failed_on_version(exc)):
                    raise error from exc
            backoff(attempt)
        raise ConcurrentModification(f"Aliases of {function_name} keep changing; retry.")

    # -- reads ---------------------------------------------------------------------

    def get(self, function_name: str, name: str) -> Alias | None:
        item = self._table.get(key(self._pk, alias_sk(name)), "get alias")
        return None if item is None else Alias.model_validate_json(item["body"]["S"])

    def all(self) -> list[Alias]:
        return [Alias.model_validate_json(i["body"]["S"]) for i in self._range(None, None)]

    def page(
        self, version: str | None, marker: str | None, limit: int
    ) -> tuple[list[Alias], str | None]:
        found = (Alias.model_validate_json(i["body"]["S"]) for i in self._range(marker, limit))
        wanted = (a for a in found if version is None or a.function_version == version)
        aliases = list(islice(wanted, limit + 1))
        more = len(aliases) > limit
        aliases = aliases[:limit]
        return aliases, (aliases[-1].name if more else None)

    def _range(self, marker: str | None, limit: int | None) -> Iterator[Item]:
        low = alias_sk(marker) if marker else ALIAS_SK_PREFIX
        found = self._table.query(
            "list aliases",
            key_condition="pk = :pk AND sk BETWEEN :low AND :high",
            values={
                ":pk": {"S": self._pk},
                ":low": {"S": low},
                ":high": {"S": ALIAS_SK_END},
            },
            page_size=None if limit is None else limit + 2,
        )
        # BETWEEN includes the marker's own item, which the previous page returned.
        return (i for i in found if not marker or i[t.SORT_KEY]["S"] != low)


def _failed_on_version(exc: ClientError) -> bool:
    """Whether the version item's own condition failed (it is gone), not $LATEST's."""
    reasons = exc.response.get("CancellationReasons", [])
    return len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed"
